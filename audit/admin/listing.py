"""Changelist pieces that keep the event admin fast on a table of millions of rows.

Django's admin assumes small tables: it counts every filtered result, offers filters whose
choices come from ``SELECT DISTINCT`` over the whole table, and builds the date hierarchy
from ``DISTINCT date_trunc(...)``. Each of those is a full scan on a big audit trail. The
classes here replace them with index-bounded queries (see docs/admin.md for measurements).
"""

import datetime as dt
import json

from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import (
    ERROR_FLAG,
    IGNORED_PARAMS,
    PAGE_VAR,
    SEARCH_VAR,
    ChangeList,
)
from django.core.exceptions import EmptyResultSet, FieldDoesNotExist, ValidationError
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import F, JSONField, Max, Min, QuerySet
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_date
from django.utils.functional import cached_property

from accounts.models import Tenant
from audit.filters import action_filter_problem, action_q
from audit.services.access_log import access_records_q
from traceledger.admin_lookups import PATTERN_LOOKUPS
from traceledger.admin_pages import PageCheckedChangeListMixin

# Lists are counted exactly up to this many rows (2,000 pages of 50; a ``LIMIT`` inside the
# ``COUNT``: ~10-40 ms of index scan here); beyond it the list says "about N" or "more than
# N". Above the event admin's ``list_max_show_all``, whose "Show all" must show all.
EXACT_COUNT_LIMIT = 100_000
# At most this many index probes find the years of the date drill-down (one per year that
# holds events). A trail spanning more years than that (garbage timestamps) lists the
# first ones and the last; the date range filter still reaches every other.
YEAR_PROBES_MAX = 60


class EstimatedCountPaginator(Paginator):
    """A paginator that never counts a big table.

    Every list is counted up to ``EXACT_COUNT_LIMIT`` rows (a ``LIMIT`` inside the
    ``COUNT``): exact below it, whatever the planner guesses. Its guess was off by 3-5 % on
    filtered sets of 4,000-18,000 events (a compliance user's "failures in October"), shown
    as if exact, and the pages past it could not be reached; and a plain ``COUNT(*)`` where
    it guessed few rows counted 121,000 matches of a search in full (3.1 s; before
    ``ANALYZE``, the planner knows nothing). Only beyond the limit is PostgreSQL's estimate
    asked for (unfiltered: ``pg_class.reltuples``, kept by autovacuum; filtered: the
    planner's, from ``EXPLAIN``), and ``estimated`` says the count is not exact: the admin
    writes ``count_text``, "about N", or "more than LIMIT" when the estimate is no bigger
    than the bounded count (it cannot estimate a full-text match: the list said "about
    100001" for 200,000 matches), the bounded count being then a floor.
    """

    estimated = False
    capped = False

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        if not isinstance(queryset, QuerySet):
            return super().count
        connection = connections[queryset.db]
        if connection.vendor != "postgresql":
            return super().count
        bounded = queryset.order_by().values("pk")[: EXACT_COUNT_LIMIT + 1].count()
        if bounded <= EXACT_COUNT_LIMIT:
            return bounded
        self.estimated = True
        if not queryset.query.where:
            estimate = _reltuples(connection, queryset.model._meta.db_table)
        else:
            estimate = _planner_rows(connection, queryset)
        if estimate is None or estimate <= EXACT_COUNT_LIMIT:
            self.capped = True
            return bounded
        return estimate

    @property
    def count_floor(self) -> str:
        """How many rows the pages reach when ``capped``."""
        return f"{EXACT_COUNT_LIMIT:,}"

    @property
    def count_text(self) -> str:
        """The count for people: "about N" or "more than N" when estimated, else "N"."""
        count = self.count
        if self.capped:
            return f"more than {self.count_floor}"
        return f"about {count:,}" if self.estimated else str(count)


def _reltuples(connection, table: str) -> int | None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass", [table])
        row = cursor.fetchone()
    # -1 (or 0) until the table has been vacuumed or analysed once: no estimate yet.
    return row[0] if row and row[0] > 0 else None


def _planner_rows(connection, queryset: QuerySet) -> int | None:
    try:
        sql, params = queryset.order_by().values("pk").query.sql_with_params()
    except EmptyResultSet:  # e.g. pk__in=[]: Django knows there is nothing to count
        return 0
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])


def time_bounds(
    queryset: QuerySet, field_name: str
) -> tuple[dt.datetime | None, dt.datetime | None]:
    """The first and last ``field_name`` of the set, as two ``ORDER BY … LIMIT 1`` probes.

    Not ``aggregate(Min, Max)``: behind a join (a full-text search) PostgreSQL computes
    MIN/MAX over every match (1.7 s for a common word on 1M events), whereas the ordered
    LIMIT 1 walks the time index and stops at the first match (0.1 ms).
    """
    values = queryset.values_list(field_name, flat=True)
    return values.order_by(field_name).first(), values.order_by(f"-{field_name}").first()


class BoundedDatesQuerySet(QuerySet):
    """``datetimes()`` from index probes instead of a ``DISTINCT date_trunc(...)`` scan.

    The admin's ``date_hierarchy`` lists the years, months or days that hold events with
    ``DISTINCT date_trunc(...)``, which reads every row of the (filtered) table. Here:

    - years: only years that hold events, each found by one ``ORDER BY … LIMIT 1`` probe from
      the start of the next year (an index walk that stops at the first row), so one event
      dated 0001-01-01 adds one year link, not two thousand; at most ``YEAR_PROBES_MAX``;
    - months and days (inside one chosen year or month): every period between the first and
      the last event (two probes); a period without events shows an empty list.

    Only the admin uses this class.
    """

    def datetimes(self, field_name, kind, order="ASC", tzinfo=None):
        first, last = time_bounds(self, field_name)
        if first is None:
            return []
        tz = tzinfo or timezone.get_current_timezone()
        first, last = timezone.localtime(first, tz), timezone.localtime(last, tz)
        if kind == "year":
            periods = [
                first.replace(year=year, month=1, day=1, hour=0, minute=0, second=0, microsecond=0)
                for year in self._years_with_rows(field_name, first, last, tz)
            ]
        else:
            periods = list(_periods(first, last, kind))
        return periods if order == "ASC" else periods[::-1]

    def aggregate(self, *args, **kwargs):
        """Django's date hierarchy, when no period is chosen yet, picks its start level from
        ``aggregate(first=Min(f), last=Max(f))``: answered by the two probes of
        ``time_bounds`` instead (a MIN/MAX behind a full-text join reads every match). Any
        other aggregate runs as usual."""
        bounds = _min_max_field(args, kwargs)
        if bounds is None:
            return super().aggregate(*args, **kwargs)
        first, last = time_bounds(self, bounds)
        return {"first": first, "last": last}

    def _years_with_rows(
        self, field_name: str, first: dt.datetime, last: dt.datetime, tz
    ) -> list[int]:
        """The years (in ``tz``) holding rows, from ``first`` up: each probe asks for the
        earliest row at or after the next year's start, which names the next year to list."""
        years = [first.year]
        values = self.values_list(field_name, flat=True).order_by(field_name)
        probes = 0
        while years[-1] < last.year and probes < YEAR_PROBES_MAX:
            start = dt.datetime(years[-1] + 1, 1, 1, tzinfo=tz)
            following = values.filter(**{f"{field_name}__gte": start}).first()
            probes += 1
            if following is None:
                break
            years.append(timezone.localtime(following, tz).year)
        if years[-1] < last.year:  # out of probes: at least the last year stays reachable
            years.append(last.year)
        return years


def _min_max_field(args, kwargs) -> str | None:
    """The field name when the aggregate is exactly ``first=Min(f), last=Max(f)``."""
    if args or set(kwargs) != {"first", "last"}:
        return None
    low, high = kwargs["first"], kwargs["last"]
    if type(low) is not Min or type(high) is not Max or low.filter or high.filter:
        return None
    names = set()
    for aggregate in (low, high):
        sources = aggregate.source_expressions  # the aggregated expressions alone
        if len(sources) != 1 or not isinstance(sources[0], F):
            return None
        names.add(sources[0].name)
    return names.pop() if len(names) == 1 else None


def _periods(first: dt.datetime, last: dt.datetime, kind: str):
    """Every month or day from ``first`` to ``last`` (years: ``_years_with_rows``)."""
    if kind == "month":
        year, month = first.year, first.month
        while (year, month) <= (last.year, last.month):
            yield first.replace(
                year=year, month=month, day=1, hour=0, minute=0, second=0, microsecond=0
            )
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    elif kind == "day":
        day = first.date()
        while day <= last.date():
            yield first.replace(
                year=day.year,
                month=day.month,
                day=day.day,
                hour=0,
                minute=0,
                second=0,
                microsecond=0,
            )
            day += dt.timedelta(days=1)
    else:
        raise ValueError(f"unsupported date hierarchy kind {kind!r}")


class EventChangeList(PageCheckedChangeListMixin, ChangeList):
    """The event list's changelist: says "N results (Show all)" only when something narrows it.

    With ``show_full_result_count = False`` Django never knows the unfiltered total, so its
    search bar always reads "N results (Show all)", the link going to the unfiltered list,
    which for an unfiltered list is the same page. When no filter, drill-down or search is
    given, the total *is* the result count, and saying so hides the line without another
    count.
    """

    @property
    def narrowed(self) -> bool:
        """Whether a search, filter or drill-down narrows the list (not just order or page)."""
        return bool(self.query) or any(name not in IGNORED_PARAMS for name in self.filter_params)

    def get_results(self, request):
        super().get_results(request)
        if not self.narrowed:
            self.full_result_count = self.result_count


class TenantScopedMixin:
    """For a ModelAdmin of rows with a ``tenant_id``: superusers see every row, anyone else
    only their own tenant's."""

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        return queryset.filter(tenant_id=request.user.tenant_id)


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
            "hidden": _other_params(changelist, {self.parameter_name}),
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

    def lookups(self, request, model_admin):
        return [("hide", "Hidden")]

    def queryset(self, request, queryset):
        if self.value() == "hide":
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
        day = _parse_day(raw)
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
            "hidden": _other_params(changelist, set(self.expected_parameters())),
            "clear": changelist.get_query_string(remove=self.expected_parameters()),
        }


# How the list names a parameter it dropped (an export says "Cannot export" instead).
FILTER_IGNORED = "Filter ignored"


class BadParamsNamedMixin:
    """For a ModelAdmin: list parameters that cannot be used (``filter_param_problems``) are
    named in a message and dropped, the other filters kept. Django's own answer to a bad
    lookup, ``?e=1``, drops every filter without a word: a compliance user would read the
    whole trail as the filtered one, an operator every letter as the filtered ones.

    A NUL in a parameter is one of these: a subclass's ``changelist_view`` (and any view of
    its own that calls ``param_problems``) is marked ``nul_query_handled`` so that
    ``traceledger.query_guard`` lets it through instead of answering the API's JSON 400."""

    def param_problems(self, request) -> dict[str, str]:
        known = changelist_param_names(self.list_filter)
        problems = filter_param_problems(
            request.GET,
            model=self.model,
            known=known,
            date_hierarchy=self.date_hierarchy,
            own_tenant_id=None if request.user.is_superuser else request.user.tenant_id,
        )
        # What Django's changelist would refuse with DisallowedModelAdminLookup, a bare 400
        # and an ERROR traceback: a lookup through a relation the list does not offer
        # (``search_entry__event_id``, ``tenant__users__username``).
        for name, values in request.GET.lists():
            if name in known or name in problems:
                continue
            if not all(self.lookup_allowed(name, value, request) for value in values):
                problems[name] = f"{name}: not a filter of this list"
        return problems

    def changelist_view(self, request, extra_context=None):
        problems = self.param_problems(request)
        if problems:
            return self.without_bad_params(request, problems, FILTER_IGNORED)
        return super().changelist_view(request, extra_context)

    def without_bad_params(self, request, problems: dict[str, str], prefix: str):
        """Says which parameters were unusable and shows the list without just those."""
        texts = (
            # On the list, as every search that cannot run is reported (events.search_not_run).
            f"Search not run: {problem}"
            if name == SEARCH_VAR and prefix == FILTER_IGNORED
            else f"{prefix}: {problem}"
            for name, problem in problems.items()
        )
        for text in dict.fromkeys(texts):
            self.message_user(request, text, messages.ERROR)
        query = request.GET.copy()
        for name in problems:
            query.pop(name, None)
        opts = self.model._meta
        url = reverse(
            f"admin:{opts.app_label}_{opts.model_name}_changelist",
            current_app=self.admin_site.name,
        )
        return HttpResponseRedirect(f"{url}?{query.urlencode()}" if query else url)


def changelist_param_names(list_filter) -> frozenset[str]:
    """The parameters a changelist takes that are no field lookup: Django's own (order, page,
    search, ...) and those of its list filter classes (``tenant``, ``occurred_from``, ...)."""
    names = {*IGNORED_PARAMS, PAGE_VAR, ERROR_FLAG}
    for entry in list_filter:
        if isinstance(entry, type):  # a field's name (or a (field, class) pair) is a field
            names.update(getattr(entry, "parameter_names", None) or (entry.parameter_name,))
    return frozenset(names)


def filter_param_problems(
    params,
    *,
    model,
    known: frozenset[str],
    date_hierarchy: str | None = None,
    own_tenant_id: int | None = None,
) -> dict[str, str]:
    """The parameters of an admin list that cannot be used: name -> why. ``known``: the
    list's own parameters (``changelist_param_names``); each filter's value is checked only
    where the list has that filter.

    Checked before the changelist is built, so that the page can say which parameter it
    dropped and keep the others. Otherwise the admin answers a bad lookup by redirecting to
    ``?e=1``, which silently lists everything unfiltered, and Django's date drill-down
    raises (a 500) for a year whose end is past 9999.

    ``own_tenant_id``: the one tenant the user sees (tenant staff; None for a superuser). A
    ``tenant`` naming another is refused: Django would drop it without a word (staff have no
    tenant filter), and an export would be recorded as of that tenant while holding the
    user's own events. Their own tenant's id is kept: it describes the list as it is.
    """
    nul = _nul_problems(params)
    if nul:
        # Alone: nothing can use such a value (PostgreSQL text cannot hold NUL, nor can the
        # read's own record), and the page that follows the redirect checks the rest.
        return nul
    problems = _repeated_problems(params, known=known)
    for name in (OccurredRangeFilter.parameter_from, OccurredRangeFilter.parameter_to):
        raw = params.get(name)
        if name in known and raw and _parse_day(raw) is None:
            problems[name] = f"{name} must be a date (YYYY-MM-DD), got {raw!r}"
    problems.update(_backwards_range_problems(params, known=known, skip=problems))
    if TenantFilter.parameter_name in known:
        problems.update(_tenant_problems(params, model=model, own_tenant_id=own_tenant_id))
    if own_tenant_id is not None:
        problems.update(
            _tenant_lookup_problems(params, model=model, known=known, own_tenant_id=own_tenant_id)
        )
    for name in (ActorIdFilter.parameter_name, TargetIdFilter.parameter_name):
        # Checked as the field lookups they were before they became filters: an id longer
        # than the field holds is named rather than listing nothing.
        if name in known and name in params:
            problems.update(field_value_problems({name: params[name]}, model=model))
    action = (params.get(ActionPrefixFilter.parameter_name) or "").strip()
    if ActionPrefixFilter.parameter_name in known and action:
        problem = action_filter_problem(action)
        if problem:
            problems[ActionPrefixFilter.parameter_name] = f"action prefix {action!r}: {problem}"
    if date_hierarchy:
        parts = [f"{date_hierarchy}__{part}" for part in ("year", "month", "day")]
        given = {name: params[name] for name in parts if name in params}
        if given and not _drill_down_valid(*(params.get(name) for name in parts)):
            shown = ", ".join(f"{name}={value}" for name, value in given.items())
            for name in given:
                problems[name] = f"no such period in the date drill-down: {shown}"
    problems.update(field_value_problems(params, model=model, known=known, skip=problems))
    return problems


def _backwards_range_problems(params, *, known: frozenset[str], skip) -> dict[str, str]:
    """A date range whose end comes before its start listed "0 audit events" without a word,
    read as "nothing happened then". The end is named and dropped (both days are shown)."""
    start, end = OccurredRangeFilter.parameter_from, OccurredRangeFilter.parameter_to
    if start not in known or end not in known or start in skip or end in skip:
        return {}
    first, last = _parse_day(params.get(start) or ""), _parse_day(params.get(end) or "")
    if first is None or last is None or last >= first:
        return {}
    return {end: f"{end} {last.isoformat()} is before {start} {first.isoformat()}"}


def _repeated_problems(params, *, known: frozenset[str]) -> dict[str, str]:
    """The list's own parameters given twice with different values. Django keeps the last
    of a filter's values (and ORs a field lookup's, which stays allowed), so ``tenant=1&
    tenant=2`` listed tenant 2 alone while the URL named both."""
    problems = {}
    for name, values in params.lists():
        distinct = list(dict.fromkeys(values))
        if name in known and len(distinct) > 1:
            shown = ", ".join(repr(value) for value in distinct)
            problems[name] = f"{name} was given {len(distinct)} values ({shown}): give one"
    return problems


def _nul_problems(params) -> dict[str, str]:
    problems = {}
    for name, values in params.lists():
        if "\x00" in name or any("\x00" in value for value in values):
            shown = name.replace("\x00", "\\u0000")
            problems[name] = (
                "the search text must not contain NUL (\\u0000)"
                if name == SEARCH_VAR
                else f"{shown}: must not contain NUL (\\u0000)"
            )
    return problems


def _tenant_problems(params, *, model, own_tenant_id: int | None) -> dict[str, str]:
    name = TenantFilter.parameter_name
    tenant = params.get(name)
    if not tenant:
        return {}
    if not tenant.isdecimal():
        return {name: f"tenant must be a tenant id, got {tenant!r}"}
    if own_tenant_id is not None and int(tenant) != own_tenant_id:
        plural = model._meta.verbose_name_plural
        return {name: f"tenant={tenant}: you see only your own tenant's {plural}"}
    # No event can name a tenant that does not exist: the list would be empty and an
    # export an empty file, both read as "nothing matched" rather than as a typo.
    if (
        own_tenant_id is None
        and _rows_need_the_tenant(model)
        and not Tenant.objects.filter(pk=int(tenant)).exists()
    ):
        return {name: f"tenant={tenant}: no such tenant"}
    return {}


def _rows_need_the_tenant(model) -> bool:
    """Whether every row belongs to an existing tenant (a foreign key to it): events do; a
    dead letter or an outbox message may name a tenant not provisioned (yet)."""
    try:
        return model._meta.get_field("tenant").is_relation
    except FieldDoesNotExist:
        return False


# The lookups of a tenant field that name one tenant by its id.
_TENANT_ID_LOOKUPS = frozenset({"", "exact", "id", "id__exact", "pk", "pk__exact"})


def _tenant_lookup_problems(params, *, model, known, own_tenant_id: int) -> dict[str, str]:
    """Field lookups on the tenant that tenant staff may not use: any that could name another
    tenant (``tenant_id=1``, ``tenant__exact``, ``tenant__in``, ``tenant__slug``). Their list
    is scoped to their own tenant, so Django answered such a lookup with an empty list, and an
    export of it was recorded as of the other tenant. Their own tenant's id is kept."""
    problems = {}
    plural = model._meta.verbose_name_plural
    for name, raw in params.items():
        if name in known:
            continue
        field_name, _, lookup = name.partition("__")
        try:
            field = model._meta.get_field(field_name)
        except FieldDoesNotExist:
            continue
        if field.name not in ("tenant", "tenant_id"):
            continue
        if lookup in _TENANT_ID_LOOKUPS and raw.isdecimal() and int(raw) == own_tenant_id:
            continue
        problems[name] = f"{name}={raw}: you see only your own tenant's {plural}"
    return problems


# Lookups whose value is one value of the field's type (checked before the query runs).
_VALUE_LOOKUPS = frozenset({"", "exact", "iexact", "gt", "gte", "lt", "lte"})
# What the admin reads as a boolean for ``__isnull`` (Django takes any other text as true).
_ISNULL_VALUES = frozenset({"true", "false", "1", "0"})


def field_value_problems(params, *, model, known=frozenset(), skip=()) -> dict[str, str]:
    """Hand-edited field lookups the database would answer with an error (a 500, or Django's
    ``?e=1``, the whole list unfiltered without a word) or answer wrongly:

    - a pattern lookup (``__regex``; an invalid pattern fails in PostgreSQL, a valid one can
      scan for long);
    - a value that is not one of the field's type (``source_ip=notanip``), also one of an
      ``__in`` list (``sequence__in=a,b``), which the admin splits at commas;
    - an ``__isnull`` that is not true or false (Django reads ``maybe`` as true);
    - any ``__range``: the admin never splits its value in two, so none can run;
    - any lookup on a JSON field (``metadata__amount=2164``): the value is compared as a JSON
      string, so a number never matches, and no index serves it;
    - a parameter that is neither a field nor one of ``known`` (``tenant__exact`` on a list
      whose ``tenant`` is a filter, not a field).
    """
    problems = {}
    for name, raw in params.items():
        if name in skip or name in known:
            continue
        field_name, _, lookup = name.partition("__")
        if lookup in PATTERN_LOOKUPS:
            problems[name] = f"{name}: pattern (regex) lookups are not offered"
            continue
        try:
            field = model._meta.get_field(field_name)
        except FieldDoesNotExist:
            problems[name] = f"{name}: no such field or filter"
            continue
        if field.is_relation and (field.many_to_one or field.one_to_one):
            field = field.target_field  # tenant=2 is the tenant's key
        if not getattr(field, "concrete", False) or field.is_relation:
            continue
        if isinstance(field, JSONField):
            # ``metadata__amount=2164`` compares the JSON string "2164" with the number 2164:
            # no rows, said as "0 events", after a scan no index serves.
            problems[name] = (
                f"{name}: filters inside {field.name} are not offered (a value there would be "
                "compared as JSON text, so numbers never match); the search box finds its "
                "string values, not its numbers"
            )
        elif lookup == "range":
            problems[name] = f"{name}: range lookups are not offered (use __gte and __lte)"
        elif lookup == "isnull":
            if raw.lower() not in _ISNULL_VALUES:
                problems[name] = f"{name}: must be true or false (1 or 0), got {raw!r}"
        elif lookup in _VALUE_LOOKUPS or lookup == "in":
            try:
                for value in raw.split(",") if lookup == "in" else [raw]:
                    field.run_validators(field.to_python(value))
            except ValidationError as exc:
                problems[name] = f"{name}: {' '.join(exc.messages)} (got {raw!r})"
    return problems


def _parse_day(raw: str) -> dt.date | None:
    try:
        return parse_date(raw)
    except ValueError:
        return None


def _drill_down_valid(year: str | None, month: str | None, day: str | None) -> bool:
    """Whether Django's date hierarchy can bound this period (it computes the next one)."""
    if year is None:
        return False
    try:
        start = dt.datetime(
            int(year), int(month if month is not None else 1), int(day if day is not None else 1)
        )
        if day:
            end = start + dt.timedelta(days=1)
        elif month:
            end = (start + dt.timedelta(days=32)).replace(day=1)
        else:
            end = start.replace(year=start.year + 1)
    except (ValueError, OverflowError):
        return False
    return end > start


def _other_params(changelist, exclude: set[str]) -> list[tuple[str, str]]:
    """The changelist's other query parameters, kept as hidden inputs of a filter form."""
    pairs = []
    for key, values in changelist.params.items():
        if key in exclude or key == "p":
            continue
        for value in values if isinstance(values, list) else [values]:
            pairs.append((key, value))
    return pairs
