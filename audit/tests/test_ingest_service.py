"""events_ingest: the worker's write path, called directly against the real PostgreSQL."""

import uuid
from datetime import datetime

import orjson
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from audit.ledger.canonical import event_hash
from audit.models import AuditEvent, ChainHead
from audit.services.event_rows import event_row
from audit.services.ingest import (
    CONFLICT_REASON,
    Batch,
    InvalidBatch,
    events_ingest,
    events_ingest_many,
)
from audit.signals import events_ingested
from audit.tests.ingest_api_support import valid_event
from audit.tests.ingest_support import make_event
from audit.validation import events_parse

pytestmark = pytest.mark.django_db


def chain_verifies(tenant_id: int) -> bool:
    prev = "0" * 64
    for expected_sequence, event in enumerate(
        AuditEvent.objects.filter(tenant_id=tenant_id).order_by("sequence"), start=1
    ):
        if event.sequence != expected_sequence or event.prev_hash != prev:
            return False
        if event_hash(prev, event) != event.hash:
            return False
        prev = event.hash
    return True


def test_it_stores_every_field_of_the_contract_intact(tenant):
    sent = make_event(source_ip="2001:db8::1", metadata={"nested": {"x": [1, 2.5, None]}})

    result = events_ingest(tenant_id=tenant.pk, events=[sent])

    assert result.stored_ids == [sent["id"]]
    stored = AuditEvent.objects.get(pk=sent["id"])
    assert stored.tenant_id == tenant.pk
    for name in (
        "event_id",
        "action",
        "outcome",
        "severity",
        "actor_id",
        "actor_type",
        "actor_name",
        "target_id",
        "target_type",
        "target_name",
        "source_ip",
        "user_agent",
        "description",
        "metadata",
    ):
        assert getattr(stored, name) == sent[name], name
    assert stored.occurred_at == datetime.fromisoformat(sent["occurred_at"])
    assert stored.received_at == datetime.fromisoformat(sent["received_at"])
    assert stored.stored_at >= stored.received_at
    assert (stored.sequence, stored.prev_hash) == (1, "0" * 64)
    assert chain_verifies(tenant.pk)


def test_it_chains_a_batch_in_order_and_advances_the_head(tenant):
    events = [make_event() for _ in range(50)]

    events_ingest(tenant_id=tenant.pk, events=events)
    events_ingest(tenant_id=tenant.pk, events=[make_event()])

    sequences = dict(AuditEvent.objects.filter(tenant=tenant).values_list("id", "sequence"))
    assert [sequences[uuid.UUID(e["id"])] for e in events] == list(range(1, 51))
    assert ChainHead.objects.get(tenant=tenant).sequence == 51
    assert chain_verifies(tenant.pk)


def test_it_drops_events_already_stored_and_duplicates_within_the_batch(tenant):
    first = make_event(event_id="same-1")
    events_ingest(tenant_id=tenant.pk, events=[first])
    again = dict(first, received_at=make_event()["received_at"])  # the POST retried
    fresh = make_event(event_id="fresh")
    fresh_twice = dict(fresh)

    result = events_ingest(tenant_id=tenant.pk, events=[again, fresh, fresh_twice])

    assert result.stored_ids == [fresh["id"]]
    assert result.duplicates == 2
    assert AuditEvent.objects.filter(tenant=tenant).count() == 2
    assert AuditEvent.objects.get(event_id="same-1").pk == uuid.UUID(first["id"])


def test_an_event_sent_with_a_server_assigned_event_id_resolves_to_the_stored_copy(tenant):
    """The API's ids and the worker's dedupe agree for server-assigned event_ids too."""
    (auto,), _ = events_parse(orjson.dumps(valid_event()), tenant_id=tenant.pk)
    events_ingest(tenant_id=tenant.pk, events=[auto])
    body = orjson.dumps(valid_event(event_id=auto["event_id"], action="second.copy"))
    (again,), _ = events_parse(body, tenant_id=tenant.pk)

    result = events_ingest(tenant_id=tenant.pk, events=[again])

    assert again["id"] == auto["id"]
    assert result.stored_ids == [] and [r.reason for r in result.rejected] == [CONFLICT_REASON]
    assert AuditEvent.objects.get(pk=again["id"]).action == auto["action"]


def test_it_keeps_the_same_event_id_apart_per_tenant(tenant, other_tenant):
    events_ingest(tenant_id=tenant.pk, events=[make_event(event_id="shared")])
    result = events_ingest(tenant_id=other_tenant.pk, events=[make_event(event_id="shared")])

    assert len(result.stored_ids) == 1
    assert AuditEvent.objects.filter(event_id="shared").count() == 2


def test_a_redelivered_batch_stores_nothing_twice(tenant):
    events = [make_event() for _ in range(5)]
    events_ingest(tenant_id=tenant.pk, events=events)

    result = events_ingest(tenant_id=tenant.pk, events=events)

    assert result.stored_ids == []
    assert result.duplicates == 5
    assert AuditEvent.objects.filter(tenant=tenant).count() == 5


@pytest.mark.parametrize(
    ("override", "reason"),
    [
        ({"action": "bad action!"}, "action may only contain"),
        ({"occurred_at": "2026-01-01T00:00:00"}, "occurred_at has no UTC offset"),
        ({"received_at": "yesterday"}, "received_at is not an ISO 8601"),
        ({"outcome": "maybe"}, "outcome must be one of"),
        ({"severity": "loud"}, "severity must be one of"),
        ({"actor_id": ""}, "actor_id must not be empty"),
        ({"actor_name": "x" * 257}, "actor_name is longer than 256"),
        ({"description": 42}, "description must be a string"),
        ({"source_ip": "300.1.1.1"}, "source_ip is not an IP address"),
        ({"metadata": ["not", "an", "object"]}, "metadata must be an object"),
        ({"metadata": {"blob": "x" * 17000}}, "metadata: Must be at most 16384 bytes"),
        ({"metadata": {"huge": 2**60}}, "metadata: Integers must be within"),
        ({"metadata": {"huge": [1e21]}}, "metadata: Numbers must be within"),
        ({"action": "invoice.update\n"}, "action may only contain"),
        ({"source_ip": "fe80::1%eth0"}, "source_ip is not an IP address"),
        ({"id": "not-a-uuid"}, "id is not a UUID"),
        ({"surprise": 1}, "unknown fields: surprise"),
    ],
)
def test_it_rejects_an_invalid_event_alone_and_names_the_field(tenant, override, reason):
    bad = make_event(**override)
    good = make_event()

    result = events_ingest(tenant_id=tenant.pk, events=[bad, good])

    assert result.stored_ids == [good["id"]]
    [rejected] = result.rejected
    assert rejected.event == bad
    assert reason in rejected.reason


def test_it_rejects_an_event_with_a_missing_field():
    event = make_event()
    del event["user_agent"]

    with pytest.raises(ValueError, match="missing fields: user_agent"):
        event_row(tenant_id=1, event=event)


def _refuse_actor(actor_id: str) -> None:
    """A constraint the worker's validation does not know: the database refuses the row."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "ALTER TABLE audit_auditevent ADD CONSTRAINT test_refuse_actor "
            "CHECK (actor_id <> %s) NOT VALID",
            [actor_id],
        )


def test_an_event_the_database_refuses_does_not_sink_its_neighbours(tenant):
    _refuse_actor("refuse-me")  # rolled back with the test's transaction
    poison = make_event(actor_id="refuse-me")
    neighbours = [make_event() for _ in range(4)]

    result = events_ingest(tenant_id=tenant.pk, events=[neighbours[0], poison, *neighbours[1:]])

    assert sorted(result.stored_ids) == sorted(e["id"] for e in neighbours)
    [rejected] = result.rejected
    assert rejected.event == poison
    assert rejected.reason.startswith("database refused the event")
    assert AuditEvent.objects.filter(tenant=tenant).count() == 4
    assert ChainHead.objects.get(tenant=tenant).sequence == 4
    assert chain_verifies(tenant.pk)


def test_an_event_the_ledger_cannot_hash_is_rejected_alone(tenant):
    poison = make_event(description="lone \ud800 surrogate")  # UTF-8 cannot carry it
    good = make_event()

    result = events_ingest(tenant_id=tenant.pk, events=[poison, good])

    assert result.stored_ids == [good["id"]]
    assert result.rejected[0].reason.startswith("ledger cannot hash the event")
    assert chain_verifies(tenant.pk)


def test_it_refuses_a_batch_of_an_unknown_tenant():
    with pytest.raises(InvalidBatch, match="tenant 987654 does not exist"):
        events_ingest(tenant_id=987654, events=[make_event()])


@pytest.mark.parametrize(
    ("tenant_id", "events", "message"),
    [("1", [], "tenant_id must be an integer"), (1, {"a": 1}, "events must be a list")],
)
def test_it_refuses_a_malformed_batch(tenant_id, events, message):
    with pytest.raises(InvalidBatch, match=message):
        events_ingest(tenant_id=tenant_id, events=events)


@pytest.fixture
def received():
    """The keyword arguments of every ``events_ingested`` sent during the test."""
    signals = []

    def receiver(sender, **kwargs):
        signals.append(kwargs)

    events_ingested.connect(receiver)
    yield signals
    events_ingested.disconnect(receiver)


def test_it_sends_events_ingested_only_after_commit(
    tenant, django_capture_on_commit_callbacks, received
):
    events = [make_event(), make_event()]
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        events_ingest(tenant_id=tenant.pk, events=events)
    assert received == []
    for callback in callbacks:
        callback()

    assert len(received) == 1
    assert received[0]["tenant_id"] == tenant.pk
    assert received[0]["event_ids"] == [e["id"] for e in events]


def test_events_ingested_names_the_request_of_each_event(
    tenant, other_tenant, django_capture_on_commit_callbacks, received
):
    """Search's index task logs under them: a coalesced transaction holds several requests."""
    batches = [
        Batch(tenant_id=tenant.pk, events=[make_event(), make_event()], request_id="req-a"),
        Batch(tenant_id=other_tenant.pk, events=[make_event()], request_id="req-b"),
        Batch(tenant_id=tenant.pk, events=[make_event()], request_id="req-c"),
        Batch(tenant_id=tenant.pk, events=[make_event()]),  # a direct call: none
    ]
    with django_capture_on_commit_callbacks(execute=True):
        events_ingest_many(batches)

    by_tenant = {r["tenant_id"]: r for r in received}
    assert by_tenant[tenant.pk]["request_ids"] == ["req-a", "req-a", "req-c", None]
    assert by_tenant[other_tenant.pk]["request_ids"] == ["req-b"]
    assert all(len(r["request_ids"]) == len(r["event_ids"]) for r in received)


def test_it_sends_no_signal_when_everything_was_a_duplicate(
    tenant, django_capture_on_commit_callbacks
):
    events = [make_event()]
    events_ingest(tenant_id=tenant.pk, events=events)

    with django_capture_on_commit_callbacks() as callbacks:
        events_ingest(tenant_id=tenant.pk, events=events)

    assert callbacks == []


def test_it_counts_stored_and_duplicate_events_and_the_lag(tenant):
    from prometheus_client import REGISTRY

    def sample(name: str) -> float:
        return REGISTRY.get_sample_value(name) or 0.0

    before = {
        name: sample(name)
        for name in (
            "traceledger_events_stored_total",
            "traceledger_events_duplicates_dropped_total",
            "traceledger_ingest_lag_seconds_count",
            "traceledger_ingest_ledger_seconds_count",
            "traceledger_ingest_ledger_seconds_sum",
            "traceledger_ingest_ledger_lock_seconds_count",
            "traceledger_ingest_ledger_lock_seconds_sum",
        )
    }
    events = [make_event(), make_event()]
    events_ingest(tenant_id=tenant.pk, events=events)
    events_ingest(tenant_id=tenant.pk, events=events)

    assert (
        sample("traceledger_events_stored_total") - before["traceledger_events_stored_total"] == 2
    )
    assert (
        sample("traceledger_events_duplicates_dropped_total")
        - before["traceledger_events_duplicates_dropped_total"]
        == 2
    )
    assert (
        sample("traceledger_ingest_lag_seconds_count")
        - before["traceledger_ingest_lag_seconds_count"]
        == 2
    )
    assert (
        sample("traceledger_ingest_ledger_seconds_count")
        - before["traceledger_ingest_ledger_seconds_count"]
        == 1
    )
    assert (
        sample("traceledger_ingest_ledger_lock_seconds_count")
        - before["traceledger_ingest_ledger_lock_seconds_count"]
        == 1
    )
    # Taking the lock is a part of the ledger's time, never more than all of it.
    lock = (
        sample("traceledger_ingest_ledger_lock_seconds_sum")
        - before["traceledger_ingest_ledger_lock_seconds_sum"]
    )
    ledger = (
        sample("traceledger_ingest_ledger_seconds_sum")
        - before["traceledger_ingest_ledger_seconds_sum"]
    )
    assert 0 < lock < ledger


def test_events_ingested_names_the_first_sequence_of_ids_in_chain_order(
    tenant, other_tenant, django_capture_on_commit_callbacks, received
):
    """Search indexes by it without reading the rows back, so it must hold across batches,
    tenants and a refused row in the middle (the slow, row-by-row path)."""
    _refuse_actor("refuse-me")  # before any insert: ALTER TABLE waits for no deferred check
    events_ingest(tenant_id=tenant.pk, events=[make_event()])  # the chain does not start at 1
    refused = make_event(actor_id="refuse-me")
    batches = [
        Batch(tenant_id=tenant.pk, events=[make_event(), refused, make_event()]),
        Batch(tenant_id=other_tenant.pk, events=[make_event(), make_event()]),
        Batch(tenant_id=tenant.pk, events=[make_event()]),
    ]
    with django_capture_on_commit_callbacks(execute=True):
        events_ingest_many(batches)

    assert [len(b.result.stored_ids) for b in batches] == [2, 2, 1]
    assert {r["tenant_id"] for r in received} == {tenant.pk, other_tenant.pk}
    for signal in received:
        stored = dict(
            AuditEvent.objects.filter(pk__in=signal["event_ids"]).values_list("id", "sequence")
        )
        sequences = [stored[uuid.UUID(i)] for i in signal["event_ids"]]
        first = signal["first_sequence"]
        assert sequences == list(range(first, first + len(sequences)))
    assert chain_verifies(tenant.pk) and chain_verifies(other_tenant.pk)


def test_several_batches_share_one_transaction_and_drop_duplicates_across_them(tenant):
    shared = make_event()
    first = Batch(tenant_id=tenant.pk, events=[shared, make_event()])
    retried = Batch(tenant_id=tenant.pk, events=[dict(shared, id=str(uuid.uuid4()))])
    unknown = Batch(tenant_id=987_654, events=[make_event()])

    events_ingest_many([first, retried, unknown])

    assert len(first.result.stored_ids) == 2
    assert (retried.result.stored_ids, retried.result.duplicates) == ([], 1)
    assert unknown.result.invalid == "tenant 987654 does not exist"
    assert AuditEvent.objects.filter(tenant=tenant).count() == 2
    assert chain_verifies(tenant.pk)


@pytest.mark.parametrize("tenant_id", [2**31, 2**63, 2**70, -1, 0])
def test_a_batch_of_an_impossible_tenant_id_is_invalid_alone(tenant, tenant_id):
    """Taken as an extra, it must not fail the transaction its neighbours share."""
    own = Batch(tenant_id=tenant.pk, events=[make_event()])
    extra = Batch(tenant_id=tenant_id, events=[make_event()])

    events_ingest_many([own], more=lambda: [extra])

    assert len(own.result.stored_ids) == 1
    assert extra.result.invalid == f"tenant {tenant_id} does not exist"


@pytest.mark.parametrize(
    "overrides",
    [
        {"event_id": "evt\x00"},
        {"description": "nul \x00 byte"},
        {"actor_name": "\x00"},
        {"metadata": {"k": ["a\x00b"]}},
        {"metadata": {"k\x00": 1}},
    ],
)
def test_a_nul_character_is_an_invalid_event_alone_even_in_another_message(tenant, overrides):
    """PostgreSQL cannot store it; in event_id it would fail the duplicate probe, i.e. the
    transaction every coalesced message shares. The API refuses it; a replay might not."""
    own = Batch(tenant_id=tenant.pk, events=[make_event()])
    bad = make_event(**overrides)
    extra = Batch(tenant_id=tenant.pk, events=[make_event(), bad])

    events_ingest_many([own], more=lambda: [extra])

    assert len(own.result.stored_ids) == 1
    assert len(extra.result.stored_ids) == 1
    [rejected] = extra.result.rejected
    assert rejected.event == bad
    assert "NUL character" in rejected.reason
    assert chain_verifies(tenant.pk)


def test_a_literal_backslash_u0000_in_metadata_is_just_text(tenant):
    event = make_event(metadata={"note": "\\u0000 is how JSON escapes NUL"})
    assert events_ingest(tenant_id=tenant.pk, events=[event]).stored_ids == [event["id"]]


COPY_TRICKY = st.text(max_size=40) | st.sampled_from(
    ["\\", "\\N", "a\tb", "line\nbreak\r\n", "\\.", "back\\slash\\", "é€😀", "\\\\t"]
)


@hyp_settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    text=COPY_TRICKY.filter(lambda t: "\x00" not in t),
    note=COPY_TRICKY.filter(lambda t: "\x00" not in t),
)
def test_any_text_is_stored_exactly_as_sent_and_hashed(tenant, text, note):
    """Through COPY's text format and jsonb: backslashes, tabs, newlines and text that looks
    like their escapes must come back as sent, and hash as stored."""
    event = make_event(
        event_id=f"copy-{uuid.uuid4().hex}",
        description=text,
        actor_name=note,
        user_agent=text + note,
        metadata={"note": note, text[:20]: [text, 1]},
    )
    (stored_id,) = events_ingest(tenant_id=tenant.pk, events=[event]).stored_ids
    row = AuditEvent.objects.get(pk=stored_id)
    assert (row.description, row.actor_name, row.user_agent) == (text, note, text + note)
    assert row.metadata == event["metadata"]
    assert row.hash == event_hash(row.prev_hash, row)
