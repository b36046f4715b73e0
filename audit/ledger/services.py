"""Writes of the ledger: signed checkpoints and the retention purge."""

import logging
from dataclasses import dataclass, field
from datetime import datetime

from django.db import connection, transaction
from django.db.models import F, OuterRef, Q, Subquery
from django.utils import timezone

from accounts.signals import SYSTEM_ACTOR, Actor
from audit.ledger import selectors
from audit.ledger.chain import chain_head_lock
from audit.ledger.keyring import retired_keys
from audit.ledger.signing import checkpoint_sign, key_id_of, signing_key, signing_key_rotate
from audit.ledger.verify import ledger_verify
from audit.models import AuditEvent, ChainHead, Checkpoint
from audit.models.ledger import CheckpointKind
from audit.selectors import event_cache_purged
from audit.signals import PurgeFollowUp, events_purged
from traceledger.log_throttle import one_line

logger = logging.getLogger(__name__)

# Advisory lock key: one checkpoint signer at a time ("TLCK" in ASCII).
CHECKPOINT_LOCK_KEY = 0x544C434B


def checkpoint_create(
    *, tenant_id: int, sequence: int, hash: str, kind: str, details: dict | None = None
) -> Checkpoint:
    """Sign and store the statement "tenant's chain had ``hash`` at ``sequence`` now"."""
    signed_at = timezone.now()
    details = details or {}
    signature, signed_by = checkpoint_sign(
        tenant_id=tenant_id,
        sequence=sequence,
        hash=hash,
        signed_at=signed_at,
        kind=kind,
        details=details,
    )
    return Checkpoint.objects.create(
        tenant_id=tenant_id,
        sequence=sequence,
        hash=hash,
        signed_at=signed_at,
        signature=signature,
        key_id=signed_by,
        kind=kind,
        details=details,
    )


def checkpoints_sign(*, refused: list[int] | None = None) -> list[Checkpoint]:
    """A periodic checkpoint for every tenant whose chain head moved since its last one.

    The tenants whose chain does not verify are left unsigned (and appended to ``refused``).
    Safe to re-run, and to run twice at once: an advisory lock lets one signer through and
    the other returns at once with nothing signed (a signer verifies what it signs, which the
    first time for a large tenant takes minutes: a second one waiting for the lock would hold
    a worker process, which also stores events, for as long).
    """
    # The signer owns the key: made now, even with nothing to sign yet, so the public key is
    # served from the first run (make run signs once at start) instead of a 503 until then.
    signing_key(create=True)
    latest = (
        Checkpoint.objects.filter(tenant_id=OuterRef("tenant_id"))
        .order_by("-sequence")
        .values("sequence")[:1]
    )
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [CHECKPOINT_LOCK_KEY])
            if not cursor.fetchone()[0]:
                logger.info("ledger checkpoints: another signer is running; nothing signed")
                return []
        # Committed heads only, never locked: signing must not wait on (or stall) ingest.
        moved = (
            ChainHead.objects.filter(sequence__gt=0)
            .annotate(signed=Subquery(latest))
            .filter(Q(signed__isnull=True) | Q(signed__lt=F("sequence")))
            # The slug for the log lines: operators know tenants by it, not by number.
            .select_related("tenant")
            .order_by("tenant_id")
        )
        created = []
        for head in moved:
            problem = _unsignable(head)
            if _purged_meanwhile(head):
                # Read above, purged since (a retention purge committed while earlier
                # tenants, or this one, were verified): the event is gone, so the check
                # could only fail, and its purge checkpoint vouches for it. The head as it
                # is now is signed on the next run. Skipping never vouches for anything.
                logger.info(
                    "ledger checkpoint skipped for tenant %s (id %s): sequence %s was purged "
                    "meanwhile",
                    head.tenant.slug,
                    head.tenant_id,
                    head.sequence,
                )
                continue
            if problem:
                logger.error(
                    "ledger checkpoint NOT signed for tenant %s (id %s): %s",
                    head.tenant.slug,
                    head.tenant_id,
                    problem,
                    extra={"tenant_id": head.tenant_id},
                )
                if refused is not None:
                    refused.append(head.tenant_id)
                continue
            created.append(
                checkpoint_create(
                    tenant_id=head.tenant_id,
                    sequence=head.sequence,
                    hash=head.hash,
                    kind=CheckpointKind.PERIODIC,
                )
            )
    if created:
        logger.info("ledger checkpoints signed", extra={"checkpoints": len(created)})
    return created


def _purged_meanwhile(head: ChainHead) -> bool:
    """Whether a purge that committed after ``head`` was read removed its event."""
    return selectors.chain_base(tenant_id=head.tenant_id).sequence >= head.sequence


def _unsignable(head: ChainHead) -> str:
    """Why the chain up to ``head`` must not be signed, or "".

    A new checkpoint vouches for the chain: without this check a rewritten chain (hashes
    recomputed, head moved) got freshly signed, and a verifier holding only the newest
    checkpoint would accept it. So the chain is verified from the latest checkpoint of a key
    this process trusts, current or retired (whose hash the stored chain must still have),
    to the head: the events since the last tick, or the whole chain the first time.
    """
    trusted = [key_id_of(signing_key(create=True).public_key()), *retired_keys()]
    last = (
        Checkpoint.objects.filter(tenant_id=head.tenant_id, key_id__in=trusted)
        .order_by("-sequence")
        .values_list("sequence", flat=True)
        .first()
    )
    result = ledger_verify(tenant_id=head.tenant_id, from_sequence=last, to_sequence=head.sequence)
    if not result.ok:
        return f"the chain does not verify at sequence {result.first_bad_sequence}: {result.reason}"
    stored = selectors.chain_event_get(tenant_id=head.tenant_id, sequence=head.sequence)
    if stored is None or stored["hash"] != head.hash:
        return f"the chain head's hash differs from event {head.sequence}'s"
    return ""


def _purge_record(*, tenant_id: int, actor: Actor, checkpoint: Checkpoint) -> None:
    # Imported here: the submission service pulls in the publisher (as audit.receivers).
    from audit.services.submission import record_system_event

    details = checkpoint.details
    record_system_event(
        tenant_id=tenant_id,
        action="ledger.purge",
        actor_id=actor.id,
        actor_type=actor.type,
        actor_name=actor.name,
        target_id=f"{details['from_sequence']}..{details['through_sequence']}",
        target_type="ledger",
        with_transaction=True,
        description=(
            f"Retention purge removed {details['removed']} events (sequences "
            f"{details['from_sequence']}..{details['through_sequence']}) received before "
            f"{details['before']}; purge checkpoint #{checkpoint.pk}."
        ),
        metadata={**details, "checkpoint_id": checkpoint.pk},
        severity="warning",
    )


class PurgeRefused(Exception):
    """The purge would destroy evidence (the chain to remove does not verify) or raced."""


@dataclass(frozen=True)
class PurgeResult:
    removed: int
    from_sequence: int | None
    through_sequence: int | None
    checkpoint: Checkpoint | None
    # What the receivers of ``events_purged`` did (search: the purged events' entries and
    # documents removed, or not and how that is caught up). Filled once the purge commits:
    # before ``events_purge`` returns, unless it ran inside an outer transaction.
    follow_ups: list[PurgeFollowUp] = field(default_factory=list)


def _purge_announce(*, tenant_id: int, from_sequence: int, through_sequence: int) -> list:
    """``events_purged`` to every receiver, after the commit; their follow-ups. A receiver
    that raises is logged by ``send_robust`` and reported here: the purge is committed and
    signed whatever a receiver does, so nothing it does may fail the purge."""
    follow_ups: list[PurgeFollowUp] = []
    responses = events_purged.send_robust(
        sender=AuditEvent,
        tenant_id=tenant_id,
        from_sequence=from_sequence,
        through_sequence=through_sequence,
    )
    for receiver, response in responses:
        if isinstance(response, Exception):
            name = getattr(receiver, "__qualname__", repr(receiver))
            follow_ups.append(
                PurgeFollowUp(
                    message=f"{name} failed after the purge ({one_line(response)}); see the log",
                    done=False,
                )
            )
        elif response:
            follow_ups.extend(response)
    return follow_ups


def purge_span(*, tenant_id: int, before: datetime) -> tuple[int, int] | None:
    """The sequences ``(first, last)`` a purge before ``before`` would remove, or None.
    Raises ``PurgeRefused`` for a cutoff in the future."""
    if before > timezone.now():
        raise PurgeRefused(
            f"the cutoff {before.isoformat()} is in the future: it would remove events still "
            "arriving; nothing was purged"
        )
    base = selectors.chain_base(tenant_id=tenant_id)
    head = selectors.chain_head_get(tenant_id=tenant_id)
    first_kept = (
        AuditEvent.objects.filter(tenant_id=tenant_id, received_at__gte=before)
        .order_by("sequence")
        .values_list("sequence", flat=True)
        .first()
    )
    through = head.sequence if first_kept is None else first_kept - 1
    return None if through <= base.sequence else (base.sequence + 1, through)


def events_purge(*, tenant_id: int, before: datetime, actor: Actor = SYSTEM_ACTOR) -> PurgeResult:
    """Remove the oldest events of a tenant: the longest prefix of its chain whose events
    were all received before ``before``, sign a ``purge`` checkpoint at the last removed
    event, from which verification resumes, and record the purge (``ledger.purge``, by
    ``actor``) in the tenant's trail.

    A prefix, not "every event older than": removing from the middle would break the chain.
    The prefix is verified first; a chain that does not verify is never purged, so a purge
    cannot erase the evidence of tampering.

    After the commit, ``events_purged`` lets the apps that derived data from the events
    (search) remove it; what they did or could not do is in ``follow_ups``. Their failure
    never undoes or fails the purge.
    """
    span = purge_span(tenant_id=tenant_id, before=before)
    if span is None:
        return PurgeResult(removed=0, from_sequence=None, through_sequence=None, checkpoint=None)
    # The purge signs a checkpoint: a process without the private key (given the public
    # key alone) refuses here, before verifying or removing anything.
    signing_key(create=True)
    base = selectors.chain_base(tenant_id=tenant_id)
    through = span[1]

    # Outside the head lock: the rows to remove are immutable, so ingest is not held up
    # for as long as verification takes.
    verification = ledger_verify(tenant_id=tenant_id, from_sequence=None, to_sequence=through)
    if not verification.ok:
        raise PurgeRefused(
            f"the chain does not verify at sequence {verification.first_bad_sequence} "
            f"({verification.reason}); nothing was purged"
        )

    with transaction.atomic():
        chain_head_lock(tenant_id=tenant_id)  # no concurrent purge or append while we cut
        if selectors.chain_base(tenant_id=tenant_id).sequence != base.sequence:
            raise PurgeRefused("another purge ran at the same time; nothing was purged")
        last = selectors.chain_event_get(tenant_id=tenant_id, sequence=through)
        removed_from = (
            AuditEvent.objects.filter(tenant_id=tenant_id, sequence__lte=through)
            .order_by("sequence")
            .values("sequence", "received_at")
            .first()
        )
        with connection.cursor() as cursor:
            cursor.execute("SELECT traceledger_purge_events(%s, %s)", [tenant_id, through])
            (removed,) = cursor.fetchone()
        transaction.on_commit(
            lambda: event_cache_purged(tenant_id=tenant_id, through_sequence=through)
        )
        checkpoint = checkpoint_create(
            tenant_id=tenant_id,
            sequence=through,
            hash=last["hash"],
            kind=CheckpointKind.PURGE,
            details={
                "removed": removed,
                "from_sequence": removed_from["sequence"],
                "through_sequence": through,
                "before": before.isoformat(),
                "oldest_received_at": removed_from["received_at"].isoformat(),
                "newest_received_at": last["received_at"].isoformat(),
                "resumes_at_sequence": through + 1,
            },
        )
        # In the purge's transaction: the record commits with the purge, as an outbox row
        # published right after the commit (it was published after the commit, and a process
        # killed in between left the purge recorded only in its checkpoint).
        _purge_record(tenant_id=tenant_id, actor=actor, checkpoint=checkpoint)
        # After the commit, never before: the search app removes what it derived from the
        # purged events (entries, documents) only once they are gone for good, and a purge
        # rolled back must leave them searchable. After the publish of the purge's own record
        # (callbacks run in order): the cleanup may wait on Elasticsearch, and an operator's
        # Ctrl-C there dropped every callback after it (the record's row would stay for the
        # outbox relay anyway).
        follow_ups: list[PurgeFollowUp] = []
        transaction.on_commit(
            lambda: follow_ups.extend(
                _purge_announce(
                    tenant_id=tenant_id,
                    from_sequence=removed_from["sequence"],
                    through_sequence=through,
                )
            ),
            robust=True,
        )
    logger.warning(
        "ledger purge",
        extra={"tenant_id": tenant_id, "removed": removed, "through_sequence": through},
    )
    return PurgeResult(
        removed=removed,
        from_sequence=removed_from["sequence"],
        through_sequence=through,
        checkpoint=checkpoint,
        follow_ups=follow_ups,
    )


def signing_key_rotate_recorded(*, actor: str) -> tuple[str, str]:
    """Rotate the checkpoint signing key (``signing.signing_key_rotate``) and record it as
    ``ledger.key_rotate`` in the system tenant's trail; returns (old, new) key ids."""
    # Imported here: the submission service pulls in the publisher (as audit.receivers).
    from audit.services.submission import record_system_event, system_tenant_id

    # The database first: while it is away, nothing is rotated (an operator told "database
    # unavailable" runs the command again, which must not rotate twice, unrecorded).
    tenant_id = system_tenant_id()
    old, new = signing_key_rotate()
    record_system_event(
        tenant_id=tenant_id,
        action="ledger.key_rotate",
        actor_id=actor[:256],
        actor_name=actor[:256],  # as the other commands record their --actor
        target_id=new,
        target_type="signing_key",
        description=(
            f"Checkpoint signing key rotated by {actor}: {old[:16]}… retired (it still "
            f"verifies the checkpoints it signed), {new[:16]}… signs from now on."
        )[:2000],
        metadata={"retired_key_id": old, "key_id": new},
        severity="notice",
    )
    return old, new
