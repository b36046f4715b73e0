"""A stored event_id posted again: a retry is dropped, other content is dead-lettered.

The ledger never changes a stored event, so the first copy stays; a later copy whose content
differs is kept as a dead letter (and counted), not dropped like a retry.
"""

import uuid

import pytest
from prometheus_client import REGISTRY

from audit.models import AuditEvent
from audit.services.ingest import (
    BEHIND_REFUSED,
    CONFLICT_REASON,
    Batch,
    events_ingest,
    events_ingest_many,
)
from audit.tests.ingest_support import make_event
from audit.tests.test_ingest_service import chain_verifies

pytestmark = pytest.mark.django_db


def retried(event: dict, **changes) -> dict:
    """The same event as a later request publishes it: a new received_at, the same id (the
    API derives it from the tenant and event_id), plus ``changes``."""
    return {**event, "received_at": make_event()["received_at"], **changes}


def test_a_retry_through_another_key_is_a_duplicate_whatever_the_server_set(tenant):
    first = make_event(
        source_ip="::ffff:192.0.2.1",
        metadata={
            "x": 1.5,
            "huge": 9.0e15,
            "small": 1e-7,
            "tiny": -2.5e-300,
            "sum": 0.1 + 0.2,
            "big": 2**53 - 1,
            "none": None,
            "deep": {"a": [1, 2.0, "é", "\U0001f600"], "": True},
        },
    )
    events_ingest(tenant_id=tenant.pk, events=[first])
    again = Batch(tenant_id=tenant.pk, events=[retried(first)], submitted_by="key:other")

    events_ingest_many([again])

    assert (again.result.duplicates, again.result.rejected) == (1, [])


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"action": "invoice.delete"}, "action"),
        ({"occurred_at": "2020-01-01T00:00:00.000000+00:00"}, "occurred_at"),
        ({"source_ip": None}, "source_ip"),
        ({"source_ip": "2001:db8::2"}, "source_ip"),
        ({"metadata": {"before": 10, "after": 13, "tags": ["a", "b"]}}, "metadata"),
        ({"metadata": {"before": True, "after": 12, "tags": ["a", "b"]}}, "metadata"),
        ({"metadata": {"before": 10, "after": 12, "tags": ["a", "b"], "x": None}}, "metadata"),
        ({"metadata": {"before": "10", "after": 12, "tags": ["a", "b"]}}, "metadata"),
        ({"description": "", "user_agent": "curl/8"}, "user_agent, description"),
    ],
)
def test_a_stored_event_id_with_other_content_is_dead_lettered_and_the_stored_one_kept(
    tenant, changes, named
):
    first = make_event(source_ip="2001:db8::1")
    events_ingest(tenant_id=tenant.pk, events=[first])
    copy = retried(first, **changes)

    result = events_ingest(tenant_id=tenant.pk, events=[copy])

    assert result.stored_ids == [] and result.duplicates == 0
    (letter,) = result.rejected
    assert letter.event == copy
    assert letter.reason == CONFLICT_REASON
    assert f"with other {named};" in letter.exception
    assert first["event_id"] in letter.exception and first["id"] in letter.exception
    stored = AuditEvent.objects.get(tenant=tenant, event_id=first["event_id"])
    assert (stored.action, stored.description) == (first["action"], first["description"])
    assert chain_verifies(tenant.pk)


def test_conflicting_copies_in_one_transaction_keep_the_first_and_dead_letter_the_other(
    tenant,
):
    first = make_event(metadata={"on": True, "n": 1})
    same = retried(first)
    other = retried(first, actor_id="user-43", metadata={"on": 1, "n": True})
    batches = [Batch(tenant_id=tenant.pk, events=[e]) for e in (first, same, other)]

    events_ingest_many(batches)

    assert [len(b.result.stored_ids) for b in batches] == [1, 0, 0]
    assert [b.result.duplicates for b in batches] == [0, 1, 0]
    assert [r.event for r in batches[2].result.rejected] == [other]
    assert "with other actor_id, metadata;" in batches[2].result.rejected[0].exception
    assert AuditEvent.objects.get(tenant=tenant).actor_id == "user-42"


def test_a_retry_behind_a_conflicting_copy_in_one_transaction_is_still_a_duplicate(tenant):
    """Coalesced messages (QA): the conflicting copy first, then an exact retry of the
    stored event. Each is judged against the stored copy, not the retry against the
    conflict."""
    stored = make_event()
    events_ingest(tenant_id=tenant.pk, events=[stored])
    conflict = retried(stored, description="other")
    retry = retried(stored)
    batches = [Batch(tenant_id=tenant.pk, events=[e]) for e in (conflict, retry)]

    events_ingest_many(batches)

    assert [r.event for r in batches[0].result.rejected] == [conflict]
    assert (batches[1].result.duplicates, batches[1].result.rejected) == (1, [])


def test_in_a_hand_edited_letter_too_a_retry_is_judged_against_the_stored_copy(tenant):
    stored = make_event()
    events_ingest(tenant_id=tenant.pk, events=[stored])
    conflict = retried(stored, description="other")

    result = events_ingest(tenant_id=tenant.pk, events=[conflict, retried(stored), conflict])

    assert result.duplicates == 1 and result.stored_ids == []
    assert [r.event for r in result.rejected] == [conflict, conflict]
    assert all("with other description;" in r.exception for r in result.rejected)


def test_copies_behind_a_first_copy_the_database_refuses_are_kept_to_replay_not_judged(
    tenant,
):
    """QA: the first copy refused (slow path), nothing is stored to be a duplicate of or
    conflict with. The later copies are dead-lettered as not tried, so replayable."""
    from audit.tests.test_ingest_service import _refuse_actor

    _refuse_actor("refuse-me")  # rolled back with the test's transaction
    poison = make_event(actor_id="refuse-me")
    good, poison_again = retried(poison, actor_id="user-42"), retried(poison)
    batches = [Batch(tenant_id=tenant.pk, events=[e]) for e in (poison, good, poison_again)]

    events_ingest_many(batches)

    [refused] = batches[0].result.rejected
    assert refused.reason.startswith("database refused the event")
    for batch, sent in zip(batches[1:], (good, poison_again), strict=True):
        assert batch.result.duplicates == 0
        assert [(r.event, r.reason) for r in batch.result.rejected] == [(sent, BEHIND_REFUSED)]
    assert not AuditEvent.objects.filter(tenant=tenant).exists()


def test_a_hand_edited_letter_holding_one_event_id_twice_keeps_the_first(tenant):
    first = make_event()
    edited = dict(first, id=str(uuid.uuid4()), target_id="inv-8")

    result = events_ingest(tenant_id=tenant.pk, events=[first, dict(first), edited])

    assert result.stored_ids == [first["id"]] and result.duplicates == 1
    assert [r.event for r in result.rejected] == [edited]
    assert "with other target_id;" in result.rejected[0].exception


def test_the_same_event_id_in_two_tenants_is_no_conflict(tenant, other_tenant):
    first = make_event(event_id="shared")
    events_ingest(tenant_id=tenant.pk, events=[first])

    result = events_ingest(
        tenant_id=other_tenant.pk, events=[make_event(event_id="shared", action="x.y")]
    )

    assert len(result.stored_ids) == 1 and result.rejected == []


def test_a_conflict_has_its_own_dead_letter_metric_label_at_zero_from_the_start(tenant):
    labels = {"reason": "conflict"}
    assert REGISTRY.get_sample_value("traceledger_events_dead_lettered_total", labels) is not None
    stored = make_event()
    events_ingest(tenant_id=tenant.pk, events=[stored])
    bad = make_event(severity="fatal")

    result = events_ingest(tenant_id=tenant.pk, events=[retried(stored, action="x.y"), bad])

    assert sorted(r.kind for r in result.rejected) == ["conflict", "invalid"]
