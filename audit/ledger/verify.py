"""Verification: recompute a tenant's chain and name the first broken sequence.

What each finding means (the first one wins; see docs/ledger.md):

- a stored field was changed → that event's hash no longer matches its content;
- an event was deleted → a gap: the missing sequence is reported;
- an event was inserted → its sequence is taken twice (refused by the unique constraint) or
  later events were renumbered, so the first renumbered/forged event fails to link or hash;
- the tail was cut, or the whole chain rewritten → the chain head or a signed checkpoint no
  longer matches the recomputed chain.
"""

from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass

from django.db import transaction

from audit.ledger import selectors
from audit.ledger.canonical import CanonicalError, event_hash
from audit.ledger.signing import checkpoint_signature_valid, key_id, verification_key
from audit.models.fields import UnreadableJSON


@dataclass(frozen=True)
class LedgerVerification:
    tenant_id: int
    ok: bool
    checked: int  # events whose hash was recomputed
    first_bad_sequence: int | None
    reason: str  # why it is bad ("" when ok)
    from_sequence: int
    # The range's real end, not the one asked for: the requested to_sequence (the head when
    # none was asked) clipped to the chain head read for this run (a broken run reports
    # where it broke in first_bad_sequence). None when the run failed before reading the head (a
    # checkpoint's signature) or the range held no event (empty chain, start beyond the head).
    to_sequence: int | None
    checkpoints_checked: int
    # The range ran from the chain's start (genesis, or the purge checkpoint) to its head: an
    # ok over the last 20,000 events of a longer chain says nothing of the events before them.
    whole_chain: bool = False
    # A break found by a signed checkpoint: the first sequence the change may lie at (after
    # the last checkpoint that still matched). The events from there on link to one another,
    # their hashes recomputed, yet are not proven. None for any other break.
    unproven_from: int | None = None

    def as_dict(self) -> dict:
        return asdict(self)


class _Broken(Exception):
    def __init__(self, sequence: int, reason: str, *, unproven_from: int | None = None):
        super().__init__(reason)
        self.sequence = sequence
        self.reason = reason
        self.unproven_from = unproven_from


def ledger_verify(
    *,
    tenant_id: int,
    from_sequence: int | None = None,
    to_sequence: int | None = None,
    progress: Callable[[int], None] | None = None,
    chunk_size: int = 2000,
) -> LedgerVerification:
    """Verify ``tenant_id``'s chain, whole (default) or the range ``[from, to]``.

    A range starts from the stored hash of the event before it (that event itself is not
    re-verified); the whole chain starts from genesis or the latest signed purge checkpoint.
    ``progress(n)`` is called as events are checked, with the number just checked.
    """
    arguments = {
        "tenant_id": tenant_id,
        "from_sequence": from_sequence,
        "to_sequence": to_sequence,
        "progress": progress,
        "chunk_size": chunk_size,
    }
    outermost = not transaction.get_connection().in_atomic_block
    result, base_sequence = _verify_once(**arguments)
    for _ in range(0 if outermost else PURGE_RETRIES):
        now = selectors.chain_base(tenant_id=tenant_id).sequence
        if result.ok or now == base_sequence or now < result.from_sequence - 1:
            break
        # Only inside a caller's transaction, where no snapshot of our own can be taken (ours
        # is consistent, and a whole chain again can take minutes): a retention purge
        # committed while this ran, removing events (or the anchor of a range) it was about
        # to read, and they read as a gap. Again, from the new base; a chain really broken
        # stays broken.
        result, base_sequence = _verify_once(**arguments)
    return result


# Verifications run again at most this many times when a purge moved the chain's base.
PURGE_RETRIES = 2
# A web request (the API's verify, the admin's button) verifies at most this many events:
# 3,000-5,000 events/s were measured on the shared 2-core reference machine under load, so a
# request stays within seconds. The whole chain is ``manage.py verify_ledger`` (docs/ledger.md §6).
VERIFY_MAX_EVENTS = 20_000


def ledger_verify_last(*, tenant_id: int, last: int) -> LedgerVerification:
    """The last ``last`` events of the chain (the API's verify without a range, the admin's
    button); from the chain's start, the run covers genesis or the purge checkpoint too."""
    head = selectors.chain_head_get(tenant_id=tenant_id)
    base = selectors.chain_base(tenant_id=tenant_id)
    low = max(head.sequence - last + 1, 1)
    return ledger_verify(
        tenant_id=tenant_id, from_sequence=None if low <= base.sequence + 1 else low
    )


@contextmanager
def _snapshot():
    """One snapshot for every read of a verification: REPEATABLE READ when this opens the
    transaction. In READ COMMITTED each statement saw the database anew, so a retention
    purge committing between reading the chain's base and its events read as "event N is
    missing (a gap in the chain)" in an intact chain (a concurrency review). Inside a
    caller's transaction the level is the caller's; ``ledger_verify`` then retries.

    A transaction anyway: in autocommit Django declares the server-side cursor WITH HOLD,
    and PostgreSQL then materialises the whole result before the first fetch."""
    outermost = not transaction.get_connection().in_atomic_block
    with transaction.atomic():
        if outermost:
            with transaction.get_connection().cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        yield


def _verify_once(
    *, tenant_id, from_sequence, to_sequence, progress, chunk_size
) -> tuple[LedgerVerification, int]:
    """One verification, and the sequence of the chain base it started from."""
    # "end": set by _verify once it has read the head, so the result reports the range it
    # covered rather than echoing a to_sequence beyond the head.
    state = {"checked": 0, "checkpoints": 0, "end": None, "whole_chain": False}
    start = from_sequence or 1
    base = None
    try:
        with _snapshot():
            base = selectors.chain_base(tenant_id=tenant_id)
            start = max(from_sequence or 1, base.sequence + 1)
            _verify(
                tenant_id=tenant_id,
                base=base,
                start=start,
                to_sequence=to_sequence,
                whole=from_sequence is None,
                state=state,
                progress=progress,
                chunk_size=chunk_size,
            )
    except _Broken as broken:
        failed = LedgerVerification(
            tenant_id=tenant_id,
            ok=False,
            checked=state["checked"],
            first_bad_sequence=broken.sequence,
            reason=broken.reason,
            from_sequence=start,
            to_sequence=state["end"],
            checkpoints_checked=state["checkpoints"],
            whole_chain=state["whole_chain"],
            unproven_from=broken.unproven_from,
        )
        return failed, base.sequence
    passed = LedgerVerification(
        tenant_id=tenant_id,
        ok=True,
        checked=state["checked"],
        first_bad_sequence=None,
        reason="",
        from_sequence=start,
        to_sequence=state["end"],
        checkpoints_checked=state["checkpoints"],
        whole_chain=state["whole_chain"],
    )
    return passed, base.sequence


def _bad_signature(checkpoint) -> str:
    """Why a checkpoint's signature fails, telling a key this process does not know (a
    signer with another TRACELEDGER_SIGNING_KEY or data folder, a public key given to this
    process that is not the signer's, a rotated key not listed as retired) from a signature
    that does not match its own key. Both stay a break: the key id is stored beside the
    checkpoint, so whoever could forge one could write any key id."""
    where = f"checkpoint #{checkpoint.pk} at {checkpoint.sequence}"
    if verification_key(checkpoint.key_id) is None:
        return (
            f"{where} names signing key {checkpoint.key_id[:16]}…, which is neither this "
            f"process's key {key_id()[:16]}… nor a retired one: the signer used another "
            "TRACELEDGER_SIGNING_KEY or data folder, this process's "
            "TRACELEDGER_SIGNING_PUBLIC_KEY or ledger-public-key.pem is not the signer's "
            "current key, a rotated key is missing from TRACELEDGER_SIGNING_RETIRED_KEYS, or "
            "the checkpoint was forged"
        )
    return f"{where} has an invalid signature for its key: altered or forged"


def _verify(*, tenant_id, base, start, to_sequence, whole, state, progress, chunk_size) -> None:
    if base.checkpoint is not None:
        state["checkpoints"] += 1
        if not checkpoint_signature_valid(base.checkpoint):
            raise _Broken(base.sequence + 1, "the purge checkpoint's signature does not verify")

    # Checkpoints before the head: a checkpoint is only ever signed for a committed head,
    # so one beyond the head read below means the head was rewound.
    checkpoints: dict[int, list] = {}
    for checkpoint in selectors.checkpoints_in_range(
        tenant_id=tenant_id, from_sequence=start, to_sequence=to_sequence
    ):
        if checkpoint.sequence <= base.sequence:
            continue  # a purge checkpoint at the base: checked above
        state["checkpoints"] += 1
        if not checkpoint_signature_valid(checkpoint):
            raise _Broken(checkpoint.sequence, _bad_signature(checkpoint))
        checkpoints.setdefault(checkpoint.sequence, []).append(checkpoint)

    # A snapshot: events committed after this read are newer than the verification and
    # are left for the next run (the range ends at this head).
    head = selectors.chain_head_get(tenant_id=tenant_id)
    end = head.sequence if to_sequence is None else min(to_sequence, head.sequence)
    state["end"] = end if end >= start else None
    state["whole_chain"] = start == base.sequence + 1 and end == head.sequence

    if start == base.sequence + 1 or start > end:
        expected_prev = base.hash
    else:
        anchor = selectors.chain_event_get(tenant_id=tenant_id, sequence=start - 1)
        if anchor is None:
            raise _Broken(start - 1, f"event {start - 1} is missing (a gap in the chain)")
        expected_prev = anchor["hash"]

    expected_seq = start
    # The chain is proven up to the range's anchor, then up to each signed checkpoint it
    # matches: a consistent rewrite (an event changed, every hash after it recomputed) links
    # everywhere, and the next checkpoint only tells that the change lies after this.
    proven_through = start - 1
    pending = 0
    try:
        for row in selectors.chain_stream(
            tenant_id=tenant_id, from_sequence=start, to_sequence=end, chunk_size=chunk_size
        ):
            sequence = row["sequence"]
            if sequence != expected_seq:
                raise _Broken(expected_seq, f"event {expected_seq} is missing (a gap in the chain)")
            if row["prev_hash"] != expected_prev:
                raise _Broken(sequence, "prev_hash does not link to the previous event's hash")
            if isinstance(row["metadata"], UnreadableJSON):
                raise _Broken(sequence, f"the stored metadata: {row['metadata'].reason}")
            try:
                computed = event_hash(expected_prev, row)
            except CanonicalError as exc:
                raise _Broken(sequence, f"the stored event cannot be canonicalized: {exc}") from exc
            if computed != row["hash"]:
                raise _Broken(sequence, "hash does not match the event's content")
            for checkpoint in checkpoints.get(sequence, ()):
                if checkpoint.hash != computed:
                    raise _Broken(
                        sequence,
                        f"the chain differs from signed checkpoint #{checkpoint.pk}: an event "
                        f"from sequence {proven_through + 1} to {sequence} was changed, removed "
                        "or inserted, and the hashes after it recomputed (the events link to "
                        "one another; only the signed checkpoint tells)",
                        unproven_from=proven_through + 1,
                    )
                proven_through = sequence
            state["checked"] += 1
            expected_prev = computed
            expected_seq += 1
            pending += 1
            if progress is not None and pending >= chunk_size:
                progress(pending)
                pending = 0
    finally:
        # Also when a break stops the walk: the bar shows how far it got (it stayed at the
        # last whole chunk, 0 % for a break in the first one).
        if progress is not None and pending:
            progress(pending)

    last_checked = expected_seq - 1
    if last_checked < end:
        raise _Broken(expected_seq, f"event {expected_seq} is missing (a gap in the chain)")
    beyond = [seq for seq in checkpoints if seq > last_checked]
    if beyond:
        # The tail was cut and the head rewound: only a signed checkpoint still knows.
        raise _Broken(
            expected_seq,
            f"event {expected_seq} is missing: a signed checkpoint covers up to {max(beyond)}",
        )
    if start <= end == head.sequence and head.hash != expected_prev:
        raise _Broken(head.sequence, "the chain head's hash differs from the chain")
    if to_sequence is None or to_sequence > head.sequence:
        # A range reaching past the head covers what lies beyond it too. Max first, head
        # second: an append commits its rows and its head together, so a row seen by the
        # first query has its head visible to the second.
        last_stored = selectors.chain_max_sequence(tenant_id=tenant_id)
        fresh_head = selectors.chain_head_get(tenant_id=tenant_id)
        if last_stored is not None and last_stored > fresh_head.sequence:
            raise _Broken(
                fresh_head.sequence + 1,
                f"an event exists beyond the chain head ({fresh_head.sequence})",
            )
    if whole:
        first_purged = selectors.chain_first_sequence(tenant_id=tenant_id, through=base.sequence)
        if first_purged is not None:
            raise _Broken(first_purged, "an event exists before the purge checkpoint's position")
