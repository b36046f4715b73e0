"""Verification names the first broken sequence for every kind of tampering."""

from io import StringIO

import pytest
from django.core.management import call_command

from audit.ledger.canonical import event_hash
from audit.ledger.services import checkpoint_create, checkpoints_sign
from audit.ledger.verify import ledger_verify
from audit.models import AuditEvent, ChainHead
from audit.tests.ledger_factories import (
    chained_events_create,
    event_row,
    ledger_guards_off,
)
from audit.tests.ledger_factories import events_tamper as _tamper


@pytest.fixture
def chain(tenant):
    chained_events_create(tenant_id=tenant.id, count=10)
    return tenant


def test_an_untouched_chain_verifies(chain):
    result = ledger_verify(tenant_id=chain.id)

    assert (result.ok, result.checked, result.first_bad_sequence) == (True, 10, None)


def test_a_tenant_without_events_verifies(tenant):
    assert ledger_verify(tenant_id=tenant.id).ok


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("event_id", "'forged'"),
        ("occurred_at", "occurred_at + interval '1 microsecond'"),
        ("received_at", "received_at - interval '1 second'"),
        ("action", "'invoice.delete'"),
        ("outcome", "'failure'"),
        ("severity", "'critical'"),
        ("actor_id", "'mallory'"),
        ("actor_type", "'service'"),
        ("actor_name", "''"),
        ("target_id", "'inv-x'"),
        ("target_type", "'order'"),
        ("target_name", "'x'"),
        ("source_ip", "'198.51.100.1'"),
        ("source_ip", "NULL"),
        ("user_agent", "'curl'"),
        ("description", "'nothing happened'"),
        ("metadata", """metadata || '{"n": 99}'"""),
        ("id", "gen_random_uuid()"),
        ("hash", "repeat('a', 64)"),
        ("prev_hash", "repeat('b', 64)"),
    ],
)
def test_it_names_the_event_whose_field_was_changed(chain, column, value):
    _tamper(
        f"UPDATE audit_auditevent SET {column} = {value} WHERE tenant_id = %s AND sequence = 4",
        [chain.id],
    )

    result = ledger_verify(tenant_id=chain.id)

    assert (result.ok, result.first_bad_sequence) == (False, 4)
    assert result.checked == 3


def test_it_names_a_deleted_event_as_the_gap(chain):
    _tamper("DELETE FROM audit_auditevent WHERE tenant_id = %s AND sequence = 6", [chain.id])

    result = ledger_verify(tenant_id=chain.id)

    assert (result.ok, result.first_bad_sequence) == (False, 6)
    assert "missing" in result.reason


def test_it_notices_a_cut_tail_from_the_chain_head(chain):
    _tamper("DELETE FROM audit_auditevent WHERE tenant_id = %s AND sequence >= 9", [chain.id])

    result = ledger_verify(tenant_id=chain.id)

    assert (result.ok, result.first_bad_sequence) == (False, 9)


def test_it_notices_a_cut_tail_and_rewound_head_from_a_signed_checkpoint(chain):
    checkpoints_sign()
    _tamper("DELETE FROM audit_auditevent WHERE tenant_id = %s AND sequence >= 9", [chain.id])
    last = AuditEvent.objects.get(tenant=chain, sequence=8)
    with ledger_guards_off():
        ChainHead.objects.filter(tenant=chain).update(sequence=8, hash=last.hash)

    result = ledger_verify(tenant_id=chain.id)

    assert (result.ok, result.first_bad_sequence) == (False, 9)
    assert "checkpoint" in result.reason


def _forged_row(tenant_id, *, sequence, prev_hash, valid_hash):
    row = event_row(tenant_id=tenant_id, n=999, description="forged")
    row.update(sequence=sequence, prev_hash=prev_hash)
    row["hash"] = event_hash(prev_hash, row) if valid_hash else "c" * 64
    return row


@pytest.mark.parametrize("valid_hash", [False, True])
def test_it_names_an_inserted_event(chain, valid_hash):
    # Make room at 5 by renumbering 5..10 to 6..11 (what an insertion needs), then insert.
    _tamper(
        "UPDATE audit_auditevent SET sequence = sequence + 1000 "
        "WHERE tenant_id = %s AND sequence >= 5",
        [chain.id],
    )
    _tamper(
        "UPDATE audit_auditevent SET sequence = sequence - 999 "
        "WHERE tenant_id = %s AND sequence > 1000",
        [chain.id],
    )
    four = AuditEvent.objects.get(tenant=chain, sequence=4)
    AuditEvent.objects.create(
        **_forged_row(chain.id, sequence=5, prev_hash=four.hash, valid_hash=valid_hash)
    )

    result = ledger_verify(tenant_id=chain.id)

    # A forged row with a correct hash links fine itself: the displaced event after it is
    # the first one that no longer fits.
    assert (result.ok, result.first_bad_sequence) == (False, 6 if valid_hash else 5)


def test_it_names_an_event_appended_behind_the_heads_back(chain):
    ten = AuditEvent.objects.get(tenant=chain, sequence=10)
    AuditEvent.objects.create(
        **_forged_row(chain.id, sequence=11, prev_hash=ten.hash, valid_hash=True)
    )

    result = ledger_verify(tenant_id=chain.id)

    assert (result.ok, result.first_bad_sequence) == (False, 11)


def test_it_verifies_a_bounded_range_from_the_stored_hash_before_it(chain):
    result = ledger_verify(tenant_id=chain.id, from_sequence=4, to_sequence=7)

    assert (result.ok, result.checked) == (True, 4)


def test_it_reports_the_range_it_verified_not_an_end_beyond_the_head(chain):
    past = ledger_verify(tenant_id=chain.id, from_sequence=4, to_sequence=100)
    whole = ledger_verify(tenant_id=chain.id)
    inside = ledger_verify(tenant_id=chain.id, from_sequence=4, to_sequence=7)

    assert (past.ok, past.checked, past.from_sequence, past.to_sequence) == (True, 7, 4, 10)
    assert (whole.checked, whole.from_sequence, whole.to_sequence) == (10, 1, 10)
    assert (inside.from_sequence, inside.to_sequence) == (4, 7)


def test_a_range_with_no_event_reports_no_end(tenant):
    result = ledger_verify(tenant_id=tenant.id, from_sequence=1, to_sequence=5)

    assert (result.ok, result.checked, result.to_sequence) == (True, 0, None)


def test_a_range_after_the_change_verifies_and_a_range_over_it_does_not(chain):
    _tamper(
        "UPDATE audit_auditevent SET action = 'x' WHERE tenant_id = %s AND sequence = 3",
        [chain.id],
    )

    assert ledger_verify(tenant_id=chain.id, from_sequence=5).ok
    assert ledger_verify(tenant_id=chain.id, from_sequence=2, to_sequence=4).first_bad_sequence == 3


def test_it_rejects_a_checkpoint_whose_hash_was_changed(chain):
    checkpoint = checkpoint_create(
        tenant_id=chain.id, sequence=5, hash="0" * 64, kind="periodic"
    )  # signed, but not what the chain says
    result = ledger_verify(tenant_id=chain.id)
    assert (result.ok, result.first_bad_sequence) == (False, 5)

    with ledger_guards_off():
        checkpoint.delete()
    good = checkpoint_create(
        tenant_id=chain.id,
        sequence=5,
        hash=AuditEvent.objects.get(tenant=chain, sequence=5).hash,
        kind="periodic",
    )
    assert ledger_verify(tenant_id=chain.id).ok
    with ledger_guards_off():  # the signature no longer matches
        type(good).objects.filter(pk=good.pk).update(hash="d" * 64)
    result = ledger_verify(tenant_id=chain.id)
    assert (result.ok, result.first_bad_sequence) == (False, 5)
    assert "invalid signature for its key" in result.reason


def test_a_checkpoint_of_another_signing_key_is_named_as_such(chain):
    from audit.ledger.signing import key_id

    checkpoint = checkpoint_create(
        tenant_id=chain.id,
        sequence=5,
        hash=AuditEvent.objects.get(tenant=chain, sequence=5).hash,
        kind="periodic",
    )
    other = "ab" * 32  # as if signed where TRACELEDGER_SIGNING_KEY differs from this process's
    with ledger_guards_off():
        type(checkpoint).objects.filter(pk=checkpoint.pk).update(key_id=other)

    result = ledger_verify(tenant_id=chain.id)

    assert (result.ok, result.first_bad_sequence) == (False, 5)
    assert (
        f"names signing key {other[:16]}…, which is neither this process's key "
        f"{key_id()[:16]}… nor a retired one"
    ) in result.reason


def test_progress_is_reported_for_every_checked_event(chain):
    seen = []
    ledger_verify(tenant_id=chain.id, progress=seen.append, chunk_size=3)
    assert sum(seen) == 10


def _rewrite_from(tenant_id: int, sequence: int) -> None:
    """A forger with the database: change one event, recompute every hash after it and move
    the chain head along, so the chain links again from genesis."""
    rows = list(
        AuditEvent.objects.filter(tenant_id=tenant_id, sequence__gte=sequence)
        .order_by("sequence")
        .values()
    )
    prev = AuditEvent.objects.get(tenant_id=tenant_id, sequence=sequence - 1).hash
    for row in rows:
        if row["sequence"] == sequence:
            row["description"] = "rewritten"
        row["prev_hash"] = prev
        prev = event_hash(prev, row)
        _tamper(
            "UPDATE audit_auditevent SET description = %s, prev_hash = %s, hash = %s "
            "WHERE tenant_id = %s AND sequence = %s",
            [row["description"], row["prev_hash"], prev, tenant_id, row["sequence"]],
        )
    with ledger_guards_off():
        ChainHead.objects.filter(tenant_id=tenant_id).update(hash=prev)


def test_the_signer_refuses_to_vouch_for_a_chain_rewritten_under_a_checkpoint(
    chain, other_tenant, caplog
):
    checkpoints_sign()  # checkpoint at 10
    _rewrite_from(chain.id, 5)
    chained_events_create(tenant_id=chain.id, count=2, start=100)  # the head moves on
    chained_events_create(tenant_id=other_tenant.id, count=1)

    refused = []
    signed = checkpoints_sign(refused=refused)

    assert [c.tenant_id for c in signed] == [other_tenant.id]
    assert refused == [chain.id]
    assert "NOT signed" in caplog.text and "checkpoint" in caplog.text
    # Named by its slug, as operators know it (integrity QA: the number alone).
    assert f"NOT signed for tenant {chain.slug} (id {chain.id})" in caplog.text
    assert not ledger_verify(tenant_id=chain.id).ok


def test_the_signer_signs_a_chain_that_verifies_since_its_last_checkpoint(chain):
    checkpoints_sign()
    chained_events_create(tenant_id=chain.id, count=3, start=100)
    assert [c.sequence for c in checkpoints_sign()] == [13]


def test_the_sign_command_fails_naming_a_tenant_it_would_not_sign(chain):
    from django.core.management import CommandError, call_command

    checkpoints_sign()
    _rewrite_from(chain.id, 5)
    chained_events_create(tenant_id=chain.id, count=1, start=100)

    with pytest.raises(CommandError, match=r"does not verify .*: acme"):
        call_command("sign_checkpoints", stdout=StringIO())


def test_a_rewrite_caught_by_a_checkpoint_says_where_the_change_may_lie(chain):
    """Every event links after a consistent rewrite: "21 events verified before it" named
    the very events that were not proven (integrity QA). The change lies after the last
    checkpoint that still matched."""
    checkpoint_create(
        tenant_id=chain.id,
        sequence=3,
        hash=AuditEvent.objects.get(tenant=chain, sequence=3).hash,
        kind="periodic",
    )
    checkpoint_create(
        tenant_id=chain.id,
        sequence=8,
        hash=AuditEvent.objects.get(tenant=chain, sequence=8).hash,
        kind="periodic",
    )
    _rewrite_from(chain.id, 5)

    result = ledger_verify(tenant_id=chain.id)

    assert (result.ok, result.first_bad_sequence, result.unproven_from) == (False, 8, 4)
    assert "an event from sequence 4 to 8 was changed" in result.reason
    out = StringIO()
    with pytest.raises(SystemExit):
        call_command("verify_ledger", "--tenant", chain.slug, stdout=out, stderr=StringIO())
    assert "BROKEN at sequence 8" in out.getvalue()
    assert "(3 events verified before sequence 4)" in out.getvalue()
    assert "verified before it" not in out.getvalue()
