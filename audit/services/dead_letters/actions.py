"""An operator's replay or discard of stored dead letters (admin and management commands)."""

from dataclasses import dataclass

import orjson
from django.db import transaction
from django.db.models import CharField, Func
from django.db.models.fields.json import KeyTransform
from django.utils import timezone

from accounts.models import Tenant
from accounts.signals import Actor
from audit.models import DeadLetter, DeadLetterStatus
from audit.services.ingest import CONFLICT_REASON
from audit.services.record_parts import Part, metadata_parts, part_suffix

# Letters whose payloads a replay holds in memory at once: a letter may be a whole batch
# (up to 1,000 events, ~5 MiB of JSON, several times that as Python objects).
REPLAY_CHUNK = 10


class UnknownDeadLetters(Exception):
    def __init__(self, ids: list[int]):
        self.ids = ids
        super().__init__(f"no dead letter with id {', '.join(map(str, ids))}")


def _locked(ids: list[int], tenant_id: int | None) -> list[tuple[int, str, int]]:
    """``(id, status, event_count)`` of each letter, locked FOR UPDATE until the caller's
    transaction ends (a second operator's replay of the same letters waits, then finds them
    no longer new). Not the payload: a letter holds up to a whole batch (~5 MiB) and a
    selection may hold thousands."""
    letters = DeadLetter.objects.select_for_update().filter(pk__in=ids).order_by("pk")
    if tenant_id is not None:
        # Another tenant's letter reads as unknown: its id is not confirmed to exist.
        letters = letters.filter(tenant_id=tenant_id)
    rows = list(letters.values_list("pk", "status", "event_count"))
    missing = sorted(set(ids) - {pk for pk, _, _ in rows})
    if missing:
        raise UnknownDeadLetters(missing)
    return rows


def _publish_ingest(payload: dict) -> str:
    """Hand a dead letter's kwargs back to the pipeline, as a fresh message.

    A fresh message carries no ``x-death``, so RabbitMQ's dead-letter cycle detection cannot
    drop it (notes §1.7). The API side's ``events_submit`` confirms the publish or falls back
    to the outbox in the caller's transaction; returns which (``"broker"`` or ``"outbox"``).
    """
    from audit.services.submission import events_submit

    submitted_by = payload.get("submitted_by")
    return events_submit(
        tenant_id=payload["tenant_id"],
        events=payload["events"],
        request_id=payload.get("request_id"),
        # Who handed the events in, kept through the dead letter (docs/ingest.md): without
        # it the replayed events were stored as nobody's.
        submitted_by=submitted_by if isinstance(submitted_by, str) else "",
    )


def _record(*, action: str, actor: Actor, letters: dict[int, int], tenant_id: int | None) -> None:
    """Record the operator's action (``letters``: id -> event count) in the system tenant's
    trail, in the action's transaction so that the record commits with it, and, when the
    actor is a tenant's staff (``tenant_id``), in that tenant's trail too: its compliance
    staff cannot read the system tenant's trail, yet the letters were theirs. Thousands of ids
    are recorded over several numbered events."""
    from audit.services.submission import record_system_event

    def build(ids: list[int], part: Part) -> dict:
        metadata = {"dead_letter_ids": ids, "event_count": sum(letters[pk] for pk in ids)}
        if part:
            metadata.update(part=part[0], parts=part[1], dead_letter_count=len(letters))
        return metadata

    verb = action.rsplit(".", 1)[-1]
    for ids, part, metadata in metadata_parts(build, list(letters)):
        event = {
            "action": action,
            # The same identity as the person's other actions (id, type, name: accounts'
            # actor_for_user), so filtering the trail by actor finds all of them.
            "actor_id": actor.id[:256],
            "actor_type": actor.type,
            "actor_name": actor.name[:256],
            "target_type": "dead_letter",
            "target_id": ",".join(map(str, ids))[:256],
            "description": (
                f"{len(letters)} dead letter(s) {verb}ed by {actor.name or actor.id}"
                f"{part_suffix(part)}"
            )[:2000],
            "metadata": metadata,
        }
        record_system_event(tenant_id=None, with_transaction=True, **event)
        if tenant_id is not None:
            record_system_event(tenant_id=tenant_id, with_transaction=True, **event)


def not_new_text(count: int) -> str:
    """Why ``count`` selected letters were left alone by a replay or a discard ("" for 0)."""
    return f"{count} no longer new (replayed or discarded already)" if count else ""


def _replayable(payload) -> bool:
    """An ingest batch the publisher can send again: a tenant id (an int, not a bool, within
    PostgreSQL's bigint), a list of events, and nothing orjson cannot write. A drained
    message is stored as it arrived, and an integer beyond 64 bits anywhere in it made the
    publish raise: the whole replay was a 500, after the letters before it had been sent."""
    if not isinstance(payload, dict) or not isinstance(payload.get("events"), list):
        return False
    tenant_id = payload.get("tenant_id")
    if type(tenant_id) is not int or not 0 < tenant_id < 2**63:
        return False
    try:
        orjson.dumps(payload)
    except orjson.JSONEncodeError:
        return False
    return True


@dataclass(frozen=True)
class ReplayResult:
    replayed: int
    not_new: int  # already replayed or discarded
    not_replayable: int  # no ingest batch to republish (not JSON, not a task, no tenant)
    # Of ``replayed``: batches RabbitMQ did not confirm, kept in the outbox for the relay.
    via_outbox: int = 0
    # Batches of a tenant that does not exist: the worker would only dead-letter them again.
    unknown_tenant: int = 0
    # Events whose event_id is stored with other content: the stored copy cannot change
    # (append-only), so the worker would only dead-letter them again.
    conflicting: int = 0

    def summary(self, selected: int) -> str:
        """The outcome for people: how many of ``selected`` were replayed, where to ("to
        audit.ingest" only when RabbitMQ confirmed every batch), and what was skipped."""
        head = f"Replayed {self.replayed} of {selected} selected dead letter(s)"
        relay = "the outbox relay publishes {} to audit.ingest once RabbitMQ is back"
        if not self.replayed:
            text = f"Replayed none of the {selected} selected dead letter(s): nothing was sent."
        elif not self.via_outbox:
            text = f"{head} to audit.ingest."
        elif self.via_outbox == self.replayed:
            text = (
                f"{head} into the outbox: RabbitMQ did not confirm them, so they were "
                f"accepted there and {relay.format('them')}."
            )
        else:
            text = (
                f"{head}: {self.replayed - self.via_outbox} to audit.ingest, "
                f"{self.via_outbox} into the outbox (RabbitMQ did not confirm them; "
                f"{relay.format('those')})."
            )
        skipped = self.skipped_text()
        return text + (f" Skipped: {skipped}." if skipped else "")

    def skipped_text(self) -> str:
        """Why letters were skipped, for people ("" when none were)."""
        parts = []
        if self.not_new:
            parts.append(not_new_text(self.not_new))
        if self.not_replayable:
            parts.append(
                f"{self.not_replayable} not replayable: the payload is not an ingest batch "
                "(not JSON, not an audit.ingest_batch task, or no tenant and events), so "
                "replaying cannot store anything; discard them once read"
            )
        if self.unknown_tenant:
            parts.append(
                f"{self.unknown_tenant} of a tenant that does not exist (the worker would "
                "dead-letter them again); discard them once read"
            )
        if self.conflicting:
            parts.append(
                f"{self.conflicting} conflicting duplicate(s): the event_id is stored with "
                "other content, which never changes, so the worker would dead-letter them "
                "again; discard them once read, or post the event under a new event_id"
            )
        return "; ".join(parts)


class _JsonbTypeof(Func):
    function = "jsonb_typeof"
    output_field = CharField()


def dead_letters_replay_preview(queryset) -> ReplayResult:
    """What ``dead_letters_replay`` would skip of ``queryset``, counted in the database (a
    "select all" may hold thousands of letters, each payload up to megabytes): the
    ``_replayable`` rule as SQL (a JSON number where it wants an int: a float ``tenant_id``
    is counted replayable here and skipped by the replay, which says so)."""
    fresh = queryset.filter(status=DeadLetterStatus.NEW)
    replayable = fresh.annotate(
        tenant_type=_JsonbTypeof(KeyTransform("tenant_id", "payload")),
        events_type=_JsonbTypeof(KeyTransform("events", "payload")),
    ).filter(tenant_type="number", events_type="array")
    fresh_count = fresh.count()
    replayable_count = replayable.count()
    conflicting = replayable.filter(reason=CONFLICT_REASON).count() if replayable_count else 0
    return ReplayResult(
        replayed=0,
        not_new=queryset.count() - fresh_count,
        not_replayable=fresh_count - replayable_count,
        conflicting=conflicting,
    )


def dead_letters_replay(
    *, ids: list[int], actor: Actor, tenant_id: int | None = None
) -> ReplayResult:
    """Republish dead letters to ``audit.ingest`` and mark them replayed.

    Raises ``UnknownDeadLetters`` (and publishes nothing) when an id does not exist, or, with
    ``tenant_id`` (the actor is that tenant's staff), is not that tenant's; the replay is then
    recorded in that tenant's trail as well as the system tenant's. Letters that are not
    ``new`` (already replayed or discarded), or whose payload is no ingest batch, are skipped
    and counted. Replaying twice is harmless anyway: the worker drops events whose
    (tenant, event_id) is stored.

    One transaction, as before: every selected row is locked first (ids, status and event
    count only), then the payloads are read ``REPLAY_CHUNK`` letters at a time, so memory
    holds one chunk of payloads, not the whole selection.
    """
    with transaction.atomic():
        selected = _locked(ids, tenant_id)
        fresh = {pk: count for pk, status, count in selected if status == DeadLetterStatus.NEW}
        fresh_ids = list(fresh)  # in id order, as _locked returns them
        replayed: list[int] = []
        via_outbox = unknown_tenant = conflicting = 0
        # Publish (confirmed) before the status commits: a failed commit only replays twice.
        for start in range(0, len(fresh_ids), REPLAY_CHUNK):
            chunk = fresh_ids[start : start + REPLAY_CHUNK]
            rows = DeadLetter.objects.filter(pk__in=chunk).order_by("pk")
            batches = [
                (pk, p, reason)
                for pk, p, reason in rows.values_list("pk", "payload", "reason")
                if _replayable(p)
            ]
            tenants = set(
                Tenant.objects.filter(pk__in={p["tenant_id"] for _, p, _ in batches}).values_list(
                    "pk", flat=True
                )
            )
            for pk, payload, reason in batches:
                # Replaying a batch whose tenant is unknown (the most common poison) only
                # made a new dead letter with nothing pointing back to this one.
                if payload["tenant_id"] not in tenants:
                    unknown_tenant += 1
                    continue
                # Its replay was reported as done and only made a new letter, the same.
                if reason == CONFLICT_REASON:
                    conflicting += 1
                    continue
                via_outbox += _publish_ingest(payload) == "outbox"
                replayed.append(pk)
        now = timezone.now()
        DeadLetter.objects.filter(pk__in=replayed).update(
            status=DeadLetterStatus.REPLAYED,
            status_changed_at=now,
            status_changed_by=actor.name or actor.id,
        )
        if replayed:
            _record(
                action="dead_letter.replay",
                actor=actor,
                letters={pk: fresh[pk] for pk in replayed},
                tenant_id=tenant_id,
            )
    return ReplayResult(
        replayed=len(replayed),
        not_new=len(selected) - len(fresh),
        not_replayable=len(fresh) - len(replayed) - unknown_tenant - conflicting,
        via_outbox=via_outbox,
        unknown_tenant=unknown_tenant,
        conflicting=conflicting,
    )


def dead_letters_discard(*, ids: list[int], actor: Actor, tenant_id: int | None = None) -> int:
    """Mark dead letters discarded (kept for the record, never replayed); returns how many.

    ``tenant_id`` as for ``dead_letters_replay``: only that tenant's letters, and the discard
    recorded in its trail too. Only ids, status and event count are read: a discard never
    needs a payload.
    """
    with transaction.atomic():
        fresh = {
            pk: count
            for pk, status, count in _locked(ids, tenant_id)
            if status == DeadLetterStatus.NEW
        }
        DeadLetter.objects.filter(pk__in=list(fresh), status=DeadLetterStatus.NEW).update(
            status=DeadLetterStatus.DISCARDED,
            status_changed_at=timezone.now(),
            status_changed_by=actor.name or actor.id,
        )
        if fresh:
            _record(action="dead_letter.discard", actor=actor, letters=fresh, tenant_id=tenant_id)
    return len(fresh)


def dead_letter_ids_new() -> list[int]:
    return list(
        DeadLetter.objects.filter(status=DeadLetterStatus.NEW)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
