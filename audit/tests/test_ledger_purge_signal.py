"""``events_purged``: a retention purge tells the other apps, after its commit, which events are
gone, and what they report back never fails the purge (the search side: search/tests/
test_purge.py)."""

from datetime import UTC, datetime
from io import StringIO

import pytest
from django.core.management import call_command

from audit.ledger.services import PurgeRefused, events_purge
from audit.models import AuditEvent, Checkpoint
from audit.models.ledger import CheckpointKind
from audit.signals import PurgeFollowUp, events_purged
from audit.tests.ledger_factories import chained_events_create

pytestmark = pytest.mark.django_db


def _received(day: int) -> dict:
    at = datetime(2026, 1, day, 12, tzinfo=UTC)
    return {"occurred_at": at, "received_at": at}


@pytest.fixture(autouse=True)
def no_trail_record(monkeypatch):
    """The purge's own ``ledger.purge`` record goes to RabbitMQ; not what these tests are about."""
    from audit.services import submission

    monkeypatch.setattr(submission, "events_submit", lambda **kwargs: "broker")


@pytest.fixture
def received():
    """The ``events_purged`` sends seen by a receiver that answers ``answer`` (or raises it)."""
    calls: list[dict] = []
    state = {"answer": None}

    def receiver(sender, **kwargs):
        calls.append(kwargs)
        if isinstance(state["answer"], Exception):
            raise state["answer"]
        return state["answer"]

    events_purged.connect(receiver, dispatch_uid="test.purge_receiver")
    yield calls, state
    events_purged.disconnect(dispatch_uid="test.purge_receiver")


def test_it_tells_the_other_apps_which_events_are_gone_only_once_the_purge_commits(
    tenant, received, django_capture_on_commit_callbacks
):
    calls, _ = received
    chained_events_create(tenant_id=tenant.id, count=3, **_received(1))
    chained_events_create(tenant_id=tenant.id, count=1, start=3, **_received(5))

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        events_purge(tenant_id=tenant.id, before=datetime(2026, 1, 2, tzinfo=UTC))
    assert calls == []  # a purge rolled back must leave the search index alone
    for callback in callbacks:
        callback()

    assert len(calls) == 1
    assert {k: calls[0][k] for k in ("tenant_id", "from_sequence", "through_sequence")} == {
        "tenant_id": tenant.id,
        "from_sequence": 1,
        "through_sequence": 3,
    }


def test_a_second_purge_says_how_far_the_tenants_events_are_gone(
    tenant, received, django_capture_on_commit_callbacks
):
    calls, _ = received
    for day in (1, 2, 3):
        chained_events_create(tenant_id=tenant.id, count=2, start=day * 10, **_received(day))

    with django_capture_on_commit_callbacks(execute=True):
        events_purge(tenant_id=tenant.id, before=datetime(2026, 1, 2, tzinfo=UTC))
        events_purge(tenant_id=tenant.id, before=datetime(2026, 1, 3, tzinfo=UTC))

    assert [(c["from_sequence"], c["through_sequence"]) for c in calls] == [(1, 2), (3, 4)]


def test_nothing_is_sent_when_nothing_is_purged_or_the_purge_is_refused(
    tenant, received, django_capture_on_commit_callbacks
):
    from audit.tests.test_ledger_verify import _tamper

    calls, _ = received
    chained_events_create(tenant_id=tenant.id, count=3, **_received(5))
    with django_capture_on_commit_callbacks(execute=True):
        assert (
            events_purge(tenant_id=tenant.id, before=datetime(2026, 1, 2, tzinfo=UTC)).removed == 0
        )
    _tamper(
        "UPDATE audit_auditevent SET action = 'x' WHERE tenant_id = %s AND sequence = 2",
        [tenant.id],
    )
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(PurgeRefused):
        events_purge(tenant_id=tenant.id, before=datetime(2026, 2, 1, tzinfo=UTC))

    assert calls == []


def test_a_receiver_that_fails_does_not_fail_the_purge_and_is_reported(
    tenant, received, django_capture_on_commit_callbacks
):
    _, state = received
    state["answer"] = RuntimeError("index on fire")
    chained_events_create(tenant_id=tenant.id, count=3, **_received(1))
    chained_events_create(tenant_id=tenant.id, count=1, start=3, **_received(5))

    with django_capture_on_commit_callbacks(execute=True):
        result = events_purge(tenant_id=tenant.id, before=datetime(2026, 1, 2, tzinfo=UTC))

    assert result.removed == 3
    assert AuditEvent.objects.filter(tenant=tenant).count() == 1
    assert Checkpoint.objects.get(tenant=tenant).kind == CheckpointKind.PURGE
    failed = [f for f in result.follow_ups if "index on fire" in f.message]
    assert len(failed) == 1
    assert not failed[0].done


@pytest.mark.django_db(transaction=True)
def test_the_command_prints_what_the_receivers_did_and_warns_about_what_they_could_not(
    tenant, received
):
    _, state = received
    state["answer"] = [
        PurgeFollowUp(message="removed 3 widgets"),
        PurgeFollowUp(message="gadgets NOT removed; the sweep retries", done=False),
    ]
    chained_events_create(tenant_id=tenant.id, count=3, **_received(1))
    chained_events_create(tenant_id=tenant.id, count=1, start=3, **_received(5))
    out, err = StringIO(), StringIO()

    call_command(
        "purge_events",
        "--before",
        "2026-01-02",
        "--tenant",
        tenant.slug,
        "--yes",
        stdout=out,
        stderr=err,
    )

    assert "removed 3 events (sequences 1..3)" in out.getvalue()
    assert f"{tenant.slug}: removed 3 widgets" in out.getvalue()
    assert f"{tenant.slug}: gadgets NOT removed; the sweep retries" in err.getvalue()
    assert "gadgets" not in out.getvalue()


@pytest.mark.django_db
def test_the_purge_is_recorded_before_any_receiver_of_events_purged_runs(
    tenant, monkeypatch, django_capture_on_commit_callbacks
):
    """Callbacks run in order: the search cleanup, which may wait on Elasticsearch, ran
    before the ledger.purge record, and a Ctrl-C there dropped the record."""
    from audit.ledger import services

    at = datetime(2026, 1, 1, 12, tzinfo=UTC)
    chained_events_create(tenant_id=tenant.id, count=3, occurred_at=at, received_at=at)
    order = []
    monkeypatch.setattr(services, "_purge_record", lambda **kw: order.append("record"))
    monkeypatch.setattr(services, "_purge_announce", lambda **kw: order.append("announce") or [])

    with django_capture_on_commit_callbacks(execute=True):
        services.events_purge(tenant_id=tenant.id, before=datetime(2026, 1, 2, tzinfo=UTC))

    assert order == ["record", "announce"]
