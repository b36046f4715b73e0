"""Changelist pieces that keep the event admin fast on a table of millions of rows.

Django's admin assumes small tables: it counts every filtered result, offers filters whose
choices come from ``SELECT DISTINCT`` over the whole table, and builds the date hierarchy
from ``DISTINCT date_trunc(...)``. Each of those is a full scan on a big audit trail. The
classes here replace them with index-bounded queries (see docs/admin.md for measurements).
"""

import datetime as dt
import json

from django.contrib.admin.views.main import (
    IGNORED_PARAMS,
    ChangeList,
)
from django.core.exceptions import EmptyResultSet
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import F, Max, Min, QuerySet
from django.utils import timezone
from django.utils.functional import cached_property

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

    def get_queryset(self, request, exclude_parameters=None):
        queryset = super().get_queryset(request, exclude_parameters)
        if self.date_hierarchy:
            # Django keeps the drill-down in "Clear all filters", as the ``__gte``/``__lt``
            # bounds it makes of it: the link led to a list still cut to that year, with
            # no sign of it (admin QA).
            drill = [f"{self.date_hierarchy}__{part}" for part in DRILL_DOWN_PARTS]
            self.clear_all_filters_qs = self.get_query_string(
                remove=[*self.get_filters_params(), *drill]
            )
        return queryset


DRILL_DOWN_PARTS = ("year", "month", "day", "gte", "lt")


class TenantScopedMixin:
    """For a ModelAdmin of rows with a ``tenant_id``: superusers see every row, anyone else
    only their own tenant's."""

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        return queryset.filter(tenant_id=request.user.tenant_id)
