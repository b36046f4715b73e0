"""The event, dead-letter and checkpoint lists' filters: the tenant, free-text boxes, ids matched
exactly as stored, a date range and the access records' switch. Each one narrows through an
index (docs/admin.md, docs/read-performance.md)."""

import datetime as dt

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.utils import timezone
from django.utils.dateparse import parse_date

from accounts.models import Tenant
from audit.filters import action_q
from audit.services.access_log import access_records_q


class TenantFilter(admin.SimpleListFilter):
    """Tenants from the (small) tenant table, not DISTINCT over events. Superusers only."""

    title = "tenant"
    parameter_name = "tenant"

    def lookups(self, request, model_admin):
        if not request.user.is_superuser:
            return []
        return [(str(t.pk), t.slug) for t in Tenant.objects.only("pk", "slug")]

    def queryset(self, request, queryset):
        if self.value():
            if not self.value().isdecimal():
                raise IncorrectLookupParameters("tenant must be a tenant id")
            return queryset.filter(tenant_id=int(self.value()))
        return queryset

    def has_output(self) -> bool:
        # Staff have one tenant: no choices, no box, and Django then drops a ``tenant=``
        # parameter unused. Their own tenant's id (the "same actor" links carry it) is
        # right as it stands; another's is refused by ``filter_param_problems`` first.
        return bool(self.lookup_choices)


class InputFilter(admin.SimpleListFilter):
    """A free-text filter box (Django has none built in); the value filters ``lookup``."""

    template = "admin/audit/input_filter.html"
    lookup = ""

    def lookups(self, request, model_admin):
        # Non-empty so the filter is rendered; the template shows a text box instead.
        return [("", "")]

    def queryset(self, request, queryset):
        # Not stripped: values are stored as sent, spaces included (see ExactIdFilter).
        value = self.value() or ""
        return queryset.filter(**{self.lookup: value}) if value else queryset

    def choices(self, changelist):
        yield {
            "value": self.value() or "",
            "hidden": other_params(changelist, {self.parameter_name}),
            "clear": changelist.get_query_string(remove=[self.parameter_name]),
        }


class ActionPrefixFilter(InputFilter):
    """A prefix of the action, read by the API's rule (``audit.filters.action_q``): a
    trailing ``*`` (``invoice.*``, as the API's ``action=`` takes it) is the prefix
    ``invoice.``, not a literal star that no action holds. A value the API would refuse
    (``*`` alone, a ``*`` inside) is named and dropped by ``filter_param_problems``."""

    title = "action (prefix)"
    parameter_name = "action_prefix"

    def queryset(self, request, queryset):
        value = (self.value() or "").strip()
        # Served by the (tenant, action varchar_pattern_ops, occurred_at) index.
        return queryset.filter(action_q(value, prefix=True)) if value else queryset


class ActorTypeFilter(InputFilter):
    title = "actor type"
    parameter_name = "actor_type"
    lookup = "actor_type"


class TargetTypeFilter(InputFilter):
    title = "target type"
    parameter_name = "target_type"
    lookup = "target_type"


def _by_tenant_index(queryset, **lookup):
    """``queryset.filter(**lookup)`` on a field indexed behind the tenant: the (tenant, …)
    indexes lead with the tenant, and naming every tenant lets PostgreSQL use them for a
    superuser's list too, instead of scanning the table (tenant staff's lists already start
    with ``tenant_id = …``)."""
    tenants = list(Tenant.objects.values_list("pk", flat=True))
    return queryset.filter(tenant_id__in=tenants, **lookup)


class ExactIdFilter(InputFilter):
    """An id as stored, matched exactly: not stripped, since an actor or target id may
    start or end with a space, and the event page's links must find exactly its events.
    Served by the (tenant, actor_id, …) and (tenant, target_id, …) indexes."""

    def queryset(self, request, queryset):
        value = self.value() or ""
        return _by_tenant_index(queryset, **{self.lookup: value}) if value else queryset


class ActorIdFilter(ExactIdFilter):
    """A filter of its own, not a raw ``actor_id=`` lookup: the event page's "All events by"
    link sets it, and a raw lookup was neither shown in the sidebar nor removed by "Clear
    all filters" (Django clears only its list filters' parameters), so the list stayed
    filtered to one actor without a word."""

    title = "actor id"
    parameter_name = "actor_id"
    lookup = "actor_id"


class TargetIdFilter(ExactIdFilter):
    """Set by the event page's "All events on" link (see ActorIdFilter)."""

    title = "target id"
    parameter_name = "target_id"
    lookup = "target_id"


class EventIdFilter(ExactIdFilter):
    """The id a service logged (``event_id``): what compliance staff usually hold. Served by
    the (tenant, event_id) unique index."""

    title = "event id (as sent)"
    parameter_name = "event_id"
    lookup = "event_id"


class AccessRecordsFilter(admin.SimpleListFilter):
    """Hides the trail's records of its own reads (``audit_log.read``, ``.search``,
    ``.export``): a compliance user's browsing otherwise fills the first page.

    Not hidden by default: "Export this list" exports what the list holds, and an export of
    the unfiltered trail is a whole stretch of the chain that tools/verify_export.py checks
    link by link; with reads left out by default it would hold gaps nobody asked for."""

    title = "reads of the audit trail"
    parameter_name = "access_records"
    HIDE = "hide"

    def lookups(self, request, model_admin):
        return [(self.HIDE, "Hidden")]

    def queryset(self, request, queryset):
        if self.value() == self.HIDE:
            return queryset.exclude(access_records_q())
        return queryset


class OccurredRangeFilter(admin.ListFilter):
    """``occurred_at`` from/to (inclusive days), two date boxes in one form."""

    title = "occurred (date range)"
    template = "admin/audit/date_range_filter.html"
    parameter_from = "occurred_from"
    parameter_to = "occurred_to"
    parameter_names = (parameter_from, parameter_to)

    def __init__(self, request, params, model, model_admin):
        super().__init__(request, params, model, model_admin)
        self.values = {}
        for name in self.expected_parameters():
            if name in params:
                value = params.pop(name)
                value = value[-1] if isinstance(value, list) else value
                if value:
                    self.values[name] = value

    def expected_parameters(self):
        return list(self.parameter_names)

    def has_output(self) -> bool:
        return True

    def _day(self, name: str) -> dt.date | None:
        raw = self.values.get(name)
        if not raw:
            return None
        day = parse_day(raw)
        if day is None:
            raise IncorrectLookupParameters(f"{name} must be a date (YYYY-MM-DD), got {raw!r}")
        return day

    def queryset(self, request, queryset):
        tz = timezone.get_current_timezone()
        start, end = self._day(self.parameter_from), self._day(self.parameter_to)
        if start:
            queryset = queryset.filter(
                occurred_at__gte=dt.datetime.combine(start, dt.time.min, tzinfo=tz)
            )
        if end and end < dt.date.max:  # to 9999-12-31 inclusive: no upper bound at all
            queryset = queryset.filter(
                occurred_at__lt=dt.datetime.combine(
                    end + dt.timedelta(days=1), dt.time.min, tzinfo=tz
                )
            )
        return queryset

    def choices(self, changelist):
        yield {
            "from": self.values.get(self.parameter_from, ""),
            "to": self.values.get(self.parameter_to, ""),
            "hidden": other_params(changelist, set(self.expected_parameters())),
            "clear": changelist.get_query_string(remove=self.expected_parameters()),
        }


# How the list names a parameter it dropped (an export says "Cannot export" instead).


def parse_day(raw: str) -> dt.date | None:
    try:
        return parse_date(raw)
    except ValueError:
        return None


def other_params(changelist, exclude: set[str]) -> list[tuple[str, str]]:
    """The changelist's other query parameters, kept as hidden inputs of a filter form."""
    pairs = []
    for key, values in changelist.params.items():
        if key in exclude or key == "p":
            continue
        for value in values if isinstance(values, list) else [values]:
            pairs.append((key, value))
    return pairs
