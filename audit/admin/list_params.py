"""The query parameters of an admin list that cannot be used, named and dropped instead of
Django's silent ``?e=1`` (the whole list, unfiltered) or a 500: ``BadParamsNamedMixin`` and the
checks behind it."""

import datetime as dt

from django.contrib import messages
from django.contrib.admin.views.main import (
    ERROR_FLAG,
    IGNORED_PARAMS,
    PAGE_VAR,
    SEARCH_VAR,
)
from django.core.exceptions import FieldDoesNotExist, ValidationError
from django.db.models import JSONField
from django.http import HttpResponseRedirect
from django.urls import reverse

from accounts.models import Tenant
from audit.admin.list_filters import (
    AccessRecordsFilter,
    ActionPrefixFilter,
    ActorIdFilter,
    EventIdFilter,
    OccurredRangeFilter,
    TargetIdFilter,
    TenantFilter,
    parse_day,
)
from audit.filters import action_filter_problem
from traceledger.admin_lookups import PATTERN_LOOKUPS

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
        offered = known | sidebar_field_param_names(
            self.model, self.list_filter, self.date_hierarchy
        )
        problems = filter_param_problems(
            request.GET,
            model=self.model,
            known=known,
            date_hierarchy=self.date_hierarchy,
            own_tenant_id=None if request.user.is_superuser else request.user.tenant_id,
        )
        # Any other parameter: a field lookup the sidebar does not offer (``outcome=failure``,
        # ``description__icontains=…``, a stale or shared link) filtered the list and its
        # export with no sign of it, not even "Clear all filters" (admin QA); one through a
        # relation (``tenant__users__username``) was Django's DisallowedModelAdminLookup, a
        # bare 400 and an ERROR traceback.
        for name in request.GET:
            if name not in offered and name not in problems:
                problems[name] = f"{name}: not a filter of this list (use the filters beside it)"
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


def sidebar_field_param_names(model, list_filter, date_hierarchy: str | None) -> frozenset[str]:
    """The parameters of the list's field filters as Django's field list filters name them
    (``outcome__exact`` for a field with choices, ``reason`` for a free-valued one, each
    with its ``__isnull``) and of its date hierarchy's drill-down."""
    names = set()
    for entry in list_filter:
        path = entry[0] if isinstance(entry, tuple) else entry
        if not isinstance(path, str):
            continue
        field = model._meta.get_field(path)
        if field.is_relation:
            names.add(f"{path}__{field.target_field.name}__exact")
        elif field.choices or field.get_internal_type() == "BooleanField":
            names.add(f"{path}__exact")
        else:
            names.add(path)
        names.add(f"{path}__isnull")
    if date_hierarchy:
        names.update(f"{date_hierarchy}__{part}" for part in ("year", "month", "day"))
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
    # The drill-down's too: Django keeps the last year given, the URL names both (admin QA).
    drill = {f"{date_hierarchy}__{part}" for part in ("year", "month", "day")}
    problems = _repeated_problems(params, known=known | drill if date_hierarchy else known)
    for name in (OccurredRangeFilter.parameter_from, OccurredRangeFilter.parameter_to):
        raw = params.get(name)
        if name in known and raw and parse_day(raw) is None:
            problems[name] = f"{name} must be a date (YYYY-MM-DD), got {raw!r}"
    problems.update(_backwards_range_problems(params, known=known, skip=problems))
    if TenantFilter.parameter_name in known:
        problems.update(_tenant_problems(params, model=model, own_tenant_id=own_tenant_id))
    if own_tenant_id is not None:
        problems.update(
            _tenant_lookup_problems(params, model=model, known=known, own_tenant_id=own_tenant_id)
        )
    for name in (
        ActorIdFilter.parameter_name,
        TargetIdFilter.parameter_name,
        EventIdFilter.parameter_name,
    ):
        # Checked as the field lookups they were before they became filters: an id longer
        # than the field holds is named rather than listing nothing.
        if name in known and name in params:
            problems.update(field_value_problems({name: params[name]}, model=model))
    hide = AccessRecordsFilter.parameter_name
    if hide in known and params.get(hide) not in (None, "", AccessRecordsFilter.HIDE):
        # Anything else showed the whole trail, reads included, as if asked (admin QA).
        problems[hide] = f"{hide} must be {AccessRecordsFilter.HIDE!r}, got {params[hide]!r}"
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
    first, last = parse_day(params.get(start) or ""), parse_day(params.get(end) or "")
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
            values = raw.split(",") if lookup == "in" else [raw]
            try:
                for value in values:
                    field.run_validators(field.to_python(value))
            except ValidationError as exc:
                problems[name] = f"{name}: {' '.join(exc.messages)} (got {raw!r})"
                continue
            choices = [str(key) for key, _ in field.flatchoices]
            if choices and lookup in ("", "exact", "in") and set(values) - set(choices):
                # ``outcome__exact=maybe`` read "0 audit events", its export an empty file,
                # where the API answers 400 "Select a valid choice" (admin QA).
                problems[name] = f"{name}: must be one of {', '.join(choices)} (got {raw!r})"
    return problems


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
