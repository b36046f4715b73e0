"""Lists too long for one event's metadata, recorded over several events; and the actions
that hit that limit: an operator's discard or replay of thousands of dead letters, and a
selection export of hundreds of events (each answered 500 after committing, unrecorded)."""

import itertools
import uuid

import orjson
import pytest
from django.urls import reverse

from accounts.principal import principal_for_user
from accounts.signals import Actor
from audit.models import DeadLetter, DeadLetterStatus
from audit.services.access_log import EXPORT, access_record
from audit.services.dead_letters import dead_letters_discard, dead_letters_replay
from audit.services.record_parts import metadata_parts
from audit.tests.factories import events_create
from audit.tests.ingest_support import make_event
from audit.validation import MAX_METADATA_BYTES

OPERATOR = Actor(id="7", type="user", name="ops-alice")


def _joined(lists) -> list:
    return list(itertools.chain.from_iterable(lists))


def _build(chunk, part):
    metadata = {"ids": chunk, "total": 0}
    if part:
        metadata.update(part=part[0], parts=part[1])
    return metadata


def test_a_list_that_fits_is_one_record_without_part_numbers():
    [(chunk, part, metadata)] = metadata_parts(_build, [1, 2, 3])

    assert (chunk, part, metadata) == ([1, 2, 3], None, {"ids": [1, 2, 3], "total": 0})


def test_a_long_list_is_cut_into_numbered_parts_each_within_the_limit():
    ids = [str(uuid.uuid4()) for _ in range(1000)]  # ~39 KiB of JSON

    parts = metadata_parts(_build, ids)

    assert len(parts) == 3
    assert _joined(chunk for chunk, _, _ in parts) == ids
    assert [part for _, part, _ in parts] == [(1, 3), (2, 3), (3, 3)]
    for chunk, _, metadata in parts:
        assert metadata["ids"] == chunk
        assert len(orjson.dumps(metadata)) <= MAX_METADATA_BYTES


def test_an_item_no_record_can_hold_is_refused():
    with pytest.raises(ValueError, match="cannot fit"):
        metadata_parts(_build, ["x" * MAX_METADATA_BYTES, "y"])


def _letters(tenant, count: int) -> list[int]:
    payload = {"tenant_id": tenant.pk, "events": [make_event()], "request_id": "r-1"}
    DeadLetter.objects.bulk_create(
        DeadLetter(
            message_id=f"bulk-{n}",
            tenant_id=tenant.pk,
            task_name="audit.ingest_batch",
            payload=payload,
            event_count=1,
            reason="conflict",
            original_queue="audit.ingest",
        )
        for n in range(count)
    )
    return sorted(DeadLetter.objects.values_list("pk", flat=True))


@pytest.mark.django_db
@pytest.mark.parametrize("act", [dead_letters_discard, dead_letters_replay])
def test_thousands_of_dead_letters_handled_at_once_are_all_recorded(act, tenant, submitted_events):
    """4,000 letters discarded from the admin: committed, then ``record_system_event``
    refused the 16 KiB of ids, a 500 and no record of the discard."""
    ids = _letters(tenant, 4000)

    act(ids=ids, actor=OPERATOR)

    records = [e for e in submitted_events if e["action"].startswith("dead_letter.")]
    assert len(records) > 1
    assert _joined(r["metadata"]["dead_letter_ids"] for r in records) == ids
    assert sum(r["metadata"]["event_count"] for r in records) == 4000
    assert {(r["metadata"]["part"], r["metadata"]["parts"]) for r in records} == {
        (k, len(records)) for k in range(1, len(records) + 1)
    }
    assert records[0]["description"].startswith("4000 dead letter(s) ")
    assert records[0]["description"].endswith(f"by ops-alice (part 1 of {len(records)})")
    assert not DeadLetter.objects.filter(status=DeadLetterStatus.NEW).exists()


@pytest.mark.django_db
def test_an_export_of_a_thousand_ids_is_recorded_over_several_events(
    tenant, teammate, submitted_events
):
    ids = [str(uuid.uuid4()) for _ in range(1000)]

    access_record(
        principal=principal_for_user(teammate),
        action=EXPORT,
        tenant_id=tenant.pk,
        filters={"format": "csv", "selection": "selected", "ids": ids},
        endpoint="admin",
    )

    assert len(submitted_events) == 3
    assert _joined(e["metadata"]["filters"]["ids"] for e in submitted_events) == ids
    for event in submitted_events:
        assert event["metadata"]["filters"]["format"] == "csv"
        assert event["metadata"]["id_count"] == 1000


@pytest.mark.django_db
def test_an_auditor_exports_a_selection_of_five_hundred_events_from_the_admin(
    client, tenant, teammate, submitted_events
):
    """462 selected events answered 500 and no file: their ids did not fit one record."""
    teammate.is_staff = True
    teammate.save()
    events = events_create(tenant_id=tenant.pk, count=500)
    client.force_login(teammate)

    response = client.post(
        reverse("admin:audit_auditevent_changelist"),
        {"action": "export_csv", "_selected_action": [str(e.pk) for e in events]},
    )

    assert response.status_code == 200
    assert len(b"".join(response.streaming_content).splitlines()) == 501
    records = [e for e in submitted_events if e["action"] == EXPORT]
    assert len(records) == 2
    assert sorted(_joined(r["metadata"]["filters"]["ids"] for r in records)) == sorted(
        str(e.pk) for e in events
    )
