"""Audit the auditors (PCI DSS 10.2.1.3): a person's access to the trail is itself an event.

One function for the API (list, detail, export), search and the admin: every export, and
every read or search by a person (``principal.kind == "user"``: JWT or admin session), is
recorded as an audit event *of the tenant read*, with the filters used in ``metadata``.
Service keys' reads are counted in ``traceledger_read_requests`` instead (a busy integration
would otherwise double the trail with its own polling); their exports are still recorded.
"""

from collections.abc import Iterable

from django.db.models import Q

from accounts.principal import Principal
from audit.metrics_read import READ_REQUESTS
from audit.services.record_parts import Part, metadata_parts, part_suffix
from audit.services.submission import SYSTEM_SUBMITTER

READ = "audit_log.read"
SEARCH = "audit_log.search"
EXPORT = "audit_log.export"
ACCESS_ACTIONS = frozenset({READ, SEARCH, EXPORT})


def is_access_record(*, action: str, submitted_by: str) -> bool:
    """Whether an event is one of TraceLedger's own records of a read. An ingest key may post
    events with these action names too, in its own tenant: those are the client's, to be
    searched and shown like any (tenant isolation QA: a forged "export" record was hidden
    with the real ones, and its metadata unsearchable)."""
    return action in ACCESS_ACTIONS and submitted_by == SYSTEM_SUBMITTER


def access_records_q() -> Q:
    """The access records (``is_access_record``) as a filter: ``exclude()`` hides them."""
    return Q(action__in=ACCESS_ACTIONS, submitted_by=SYSTEM_SUBMITTER)


def access_record(
    *,
    principal: Principal,
    action: str,
    tenant_id: int | None,
    shown: Iterable[int] = (),
    filters: dict | None = None,
    endpoint: str = "",
    target_id: str = "",
    target_type: str = "",
    description: str = "",
) -> bool:
    """Record (or count) one access; returns True when an audit event was submitted.

    ``tenant_id`` None is a superuser's read of every tenant: recorded with its filters in the
    system tenant's trail, and without them (they may name any tenant's people) in the trail
    of each tenant whose events it ``shown`` (``audit.admin.access_log.read_tenant_ids``
    decides the admin's list itself).
    """
    if action not in ACCESS_ACTIONS:
        raise ValueError(f"action must be one of {sorted(ACCESS_ACTIONS)}, got {action!r}")
    READ_REQUESTS.labels(endpoint=endpoint or action, principal_kind=principal.kind).inc()
    if principal.kind != "user" and action != EXPORT:
        return False

    # Imported here: the ingest side owns submission and may import read-side modules.
    from audit.services.submission import record_system_event

    actor_type = "user" if principal.kind == "user" else "service"
    actor_id = str(principal.user_id) if principal.kind == "user" else str(principal.api_key_id)
    filters = dict(filters or {})
    ids = filters.get("ids")

    def build(chunk: list, part: Part) -> dict:
        metadata = {"filters": filters if ids is None else {**filters, "ids": chunk}}
        metadata["endpoint"] = endpoint
        if principal.is_superuser:
            metadata["superuser"] = True
        if part:
            metadata.update(part=part[0], parts=part[1], id_count=len(ids))
        return metadata

    description = description or _describe(principal=principal, action=action)

    def record(trail: int | None, metadata: dict, suffix: str = "") -> str:
        return record_system_event(
            tenant_id=trail,
            action=action,
            actor_id=actor_id,
            actor_type=actor_type,
            actor_name=principal.name,
            target_id=target_id,
            target_type=target_type,
            description=f"{description}{suffix}"[:2000],
            metadata=metadata,
        )

    # A selection export's ids (up to 1,000) may need several records; a filter never does.
    parts = metadata_parts(build, ids if isinstance(ids, list) else [])
    tenants_shown = sorted(set(shown))
    if tenant_id is None and tenants_shown:
        # A superuser's read of every tenant: its search text and filters may name any
        # tenant's people and things, so they go to the system tenant's trail alone, with the
        # tenants it showed; each of those tenants records the read and where its query is.
        queries = [
            record(None, {**metadata, "tenants_shown": tenants_shown}, part_suffix(part))
            for _, part, metadata in parts
        ]
        for trail in tenants_shown:
            record(
                trail,
                {
                    "endpoint": endpoint,
                    "superuser": True,
                    "every_tenant": True,
                    "query_recorded_as": queries[0],
                },
                " (of every tenant; its query is in the system tenant's trail)",
            )
        return True

    for _, part, metadata in parts:
        record(tenant_id, metadata, part_suffix(part))
    return True


def _describe(*, principal: Principal, action: str) -> str:
    verb = {READ: "read", SEARCH: "searched", EXPORT: "exported"}[action]
    return f"{principal.name} {verb} the audit trail"
