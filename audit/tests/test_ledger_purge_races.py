"""A retention purge committing while the chain is verified or signed is no tampering.

A concurrency review saw both: one verification in ~700 said "event N is missing (a gap in
the chain)" of an intact chain, and ``sign_checkpoints`` logged "NOT signed … the chain
head's hash differs" and exited 1, each time a purge committed at that moment.
"""

import logging
import threading
from datetime import UTC, datetime

import pytest
from django.db import transaction

from audit.ledger import selectors, services, verify
from audit.ledger.services import checkpoints_sign, events_purge
from audit.ledger.verify import ledger_verify
from audit.models import Checkpoint
from audit.models.ledger import CheckpointKind
from audit.tests.ledger_factories import chained_events_create


def _received(day: int) -> dict:
    at = datetime(2026, 1, day, 12, tzinfo=UTC)
    return {"occurred_at": at, "received_at": at}


def _chain(tenant) -> None:
    for day in (1, 2, 3):
        chained_events_create(tenant_id=tenant.id, count=3, start=day * 10, **_received(day))


def _purge_right_after_the_base_is_read(monkeypatch, tenant, before: datetime) -> None:
    """The first time verification reads the chain's base, a purge up to ``before`` commits
    on another connection (as ``manage.py purge_events`` would)."""
    original = selectors.chain_base
    done = []

    def purge_elsewhere():
        from django.db import connection

        try:
            events_purge(tenant_id=tenant.id, before=before)
        finally:
            connection.close()

    def chain_base(**kwargs):
        base = original(**kwargs)
        if not done:
            done.append(True)  # first: the purge reads the base too
            thread = threading.Thread(target=purge_elsewhere)
            thread.start()
            thread.join(30)
        return base

    monkeypatch.setattr(selectors, "chain_base", chain_base)


@pytest.mark.django_db(transaction=True)
def test_a_purge_committed_during_a_verification_is_not_a_gap(tenant, monkeypatch):
    """Verification reads one snapshot (REPEATABLE READ): the chain as it was before the
    purge, whole, without running again."""
    _chain(tenant)
    _purge_right_after_the_base_is_read(monkeypatch, tenant, datetime(2026, 1, 3, tzinfo=UTC))
    monkeypatch.setattr(verify, "PURGE_RETRIES", 0)

    result = ledger_verify(tenant_id=tenant.id)

    assert Checkpoint.objects.filter(kind=CheckpointKind.PURGE).count() == 1
    assert result.ok, result.reason
    assert (result.from_sequence, result.checked) == (1, 9)
    assert ledger_verify(tenant_id=tenant.id).ok


@pytest.mark.django_db(transaction=True)
def test_a_purge_committed_during_a_verification_in_a_callers_transaction_is_no_gap(
    tenant, monkeypatch
):
    """Inside a caller's transaction (READ COMMITTED: sign_checkpoints) the purged events
    read as a gap, and the verification runs again from the new base."""
    _chain(tenant)
    _purge_right_after_the_base_is_read(monkeypatch, tenant, datetime(2026, 1, 3, tzinfo=UTC))

    with transaction.atomic():
        result = ledger_verify(tenant_id=tenant.id)

    assert result.ok, result.reason
    assert result.from_sequence == 7  # from the purge's base, the second time


@pytest.mark.django_db(transaction=True)
def test_a_real_gap_is_still_reported_after_the_purge_retries(tenant, monkeypatch):
    from audit.tests.test_ledger_verify import _tamper

    _chain(tenant)
    _tamper("DELETE FROM audit_auditevent WHERE tenant_id = %s AND sequence = 8", [tenant.id])
    _purge_right_after_the_base_is_read(monkeypatch, tenant, datetime(2026, 1, 2, tzinfo=UTC))

    with transaction.atomic():
        result = ledger_verify(tenant_id=tenant.id)

    assert Checkpoint.objects.filter(kind=CheckpointKind.PURGE).count() == 1
    assert (result.ok, result.first_bad_sequence) == (False, 8)


@pytest.mark.django_db
def test_the_signer_skips_a_head_purged_while_it_ran_without_calling_it_rewritten(
    tenant, monkeypatch, caplog
):
    _chain(tenant)
    original = services.ledger_verify
    purged = []

    def verify_while_a_purge_commits(**kwargs):
        if not purged:
            purged.append(True)  # events_purge verifies too
            events_purge(tenant_id=tenant.id, before=datetime(2026, 1, 4, tzinfo=UTC))
        return original(**kwargs)

    monkeypatch.setattr(services, "ledger_verify", verify_while_a_purge_commits)
    refused = []
    with caplog.at_level(logging.INFO, logger="audit.ledger.services"):
        created = checkpoints_sign(refused=refused)

    assert (created, refused) == ([], [])
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("purged meanwhile" in r.getMessage() for r in caplog.records)
    assert not Checkpoint.objects.filter(kind=CheckpointKind.PERIODIC).exists()
