"""The list filters of ARCHITECTURE §3, one FilterSet shared by list, search, export and admin.

Semantics:

- ``event_id``, ``actor_id``, ``actor_type``, ``target_type``, ``target_id``: exact,
  case-sensitive match. ``event_id`` is not in ARCHITECTURE's list: a service that logged its
  own idempotency key looks the event up by it (the (tenant, event_id) unique index).
- ``action``: exact match, or a prefix match when the value ends with ``*``
  (``invoice.*`` matches ``invoice.update`` and ``invoice.create.draft``). Only a trailing
  ``*`` is special; the rest must be a valid action (``[A-Za-z0-9_.:-]``). ``*`` alone is
  refused: it would match everything, so leave the filter out instead.
- ``outcome``, ``severity``: one of the contract's values, else 400.
- ``occurred_after``: inclusive (``occurred_at >= value``); ``occurred_before``: exclusive
  (``occurred_at < value``), so consecutive windows ``[a, b)``, ``[b, c)`` never overlap.
  ISO 8601 / RFC 3339, ``T``/``Z`` in either case as ingest takes them; a value without an
  offset is read as UTC.

Invalid values answer 400 with the field named (``DjangoFilterBackend`` raises a DRF
``ValidationError`` from the form errors). ``reject_unknown_params`` refuses the query
string's other mistakes, also with the parameter named: an unknown parameter (a misspelt
filter would silently return everything) and a repeated one (only the last value would be
applied). Integer parameters are read with ``plain_int`` where they are parsed (the
pagination, the ledger's ``PlainIntegerField``).
"""

import re
from collections.abc import Iterable
from datetime import UTC

import django_filters
from django import forms
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import RegexValidator
from django.db.models import Q
from django_filters.fields import IsoDateTimeField
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework.exceptions import ValidationError

from audit.models import AuditEvent, Outcome, Severity

# The characters and the trailing '*' only: the length is its own rule, so that a long but
# well-formed value is told that it is too long and nothing else.
ACTION_FILTER_RE = re.compile(r"^[A-Za-z0-9_.:-]+\*?\Z")
ACTION_MAX_LENGTH = 128  # as ingest takes it (audit.api.ingest_schema)
# Both rules in one for the OpenAPI schema (an ECMA regex there: "$", not "\Z").
ACTION_FILTER_PATTERN = rf"^[A-Za-z0-9_.:-]{{1,{ACTION_MAX_LENGTH}}}\*?$"

# Every query parameter but ``q`` and ``format``: "", as a form sends an empty box, is read as
# the parameter left out (django-filter, DRF's serializer fields, the pagination).
EMPTY_MEANS_ABSENT = "An empty value is the same as leaving it out."

# Query parameters every filtered read understands besides the filters themselves.
PAGING_PARAMS = frozenset({"cursor", "page_size", "tenant"})

_ASCII_DIGITS = re.compile(r"[0-9]+")


def plain_int(raw: str) -> int | None:
    """``raw`` as an int when it is plain ASCII digits, else None. Python's int(), and so
    DRF's IntegerField, also reads "1_0", "+5", " 5", non-ASCII digits (Arabic-Indic,
    fullwidth...) and, in DRF, "5.0"."""
    if _ASCII_DIGITS.fullmatch(raw) is None:
        return None
    try:
        return int(raw)
    except ValueError:  # beyond int()'s limit of 4,300 digits
        return None


# A time, then a space and an offset's digits: "...T00:00:00 01:00" is what the query
# string's decoding makes of an unencoded "+01:00" (a bare "+" means a space).
_SPACE_FOR_PLUS = re.compile(
    r"[0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:[.,][0-9]+)?)? [0-9]{2}(?::?[0-9]{2})?\Z"
)


class RfcDateTimeField(IsoDateTimeField):
    """django-filter's ISO 8601 field, also reading a lowercase ``t`` and ``z`` (RFC 3339
    §5.6 allows them, and ingest takes them), and refusing non-ASCII digits (Django's
    ISO pattern reads any Unicode digit)."""

    def to_python(self, value):
        if isinstance(value, str):
            if not value.isascii():
                raise forms.ValidationError(self.error_messages["invalid"], code="invalid")
            try:
                # Upper-casing ASCII changes only letters; Python reads the designators so.
                return super().to_python(value.upper())
            except forms.ValidationError:
                if _SPACE_FOR_PLUS.search(value.strip()):
                    # The "%2B" as params: django-filter %-formats every message.
                    raise forms.ValidationError(
                        "Enter a valid date/time. It holds a space where an offset's `+` "
                        "would be: a `+` in a URL must be sent as `%(plus)s` (`%(example)s`).",
                        code="invalid",
                        params={"plus": "%2B", "example": "2026-11-30T00:00:00%2B01:00"},
                    ) from None
                raise
        return super().to_python(value)


class UtcDateTimeFilter(django_filters.IsoDateTimeFilter):
    """Compares in UTC: PostgreSQL refuses offsets beyond ±15:59 that RFC 3339 allows."""

    field_class = RfcDateTimeField

    def __init__(self, *args, param: str, **kwargs):
        self.param = param
        super().__init__(*args, **kwargs)

    def filter(self, qs, value):
        if value is not None:
            try:
                value = value.astimezone(UTC)
            except OverflowError:
                raise ValidationError({self.param: ["Out of the supported date range."]}) from None
        return super().filter(qs, value)


def validate_action_length(value: str) -> None:
    """At most ``ACTION_MAX_LENGTH`` characters before the optional trailing ``*``."""
    action = value.removesuffix("*")
    if len(action) > ACTION_MAX_LENGTH:
        raise forms.ValidationError(
            f"Ensure the action has at most {ACTION_MAX_LENGTH} characters before an optional "
            f"trailing '*' (it has {len(action)}).",
            code="max_length",
        )


ACTION_FILTER_VALIDATORS = (
    RegexValidator(
        ACTION_FILTER_RE,
        "Use an action of [A-Za-z0-9_.:-], optionally ending with '*' (not '*' alone).",
    ),
    validate_action_length,
)


def action_filter_problem(value: str) -> str | None:
    """Why ``value`` is no action filter (the API's 400, the admin's message), or None."""
    try:
        for validator in ACTION_FILTER_VALIDATORS:
            validator(value)
    except DjangoValidationError as exc:
        return " ".join(exc.messages)
    return None


def action_q(value: str, *, prefix: bool = False) -> Q:
    """The action filter's one rule, for the API's ``action`` and the admin's "action
    (prefix)" box: a trailing ``*`` makes ``value`` a prefix (``invoice.*`` matches
    ``invoice.update``); without it ``value`` is the exact action, or, with ``prefix`` (the
    admin's box, which always was a prefix), a prefix all the same, so that ``invoice.*``
    and ``invoice.`` are one filter there."""
    if value.endswith("*"):
        value, prefix = value[:-1], True
    # LIKE 'prefix%' (Django escapes _ and %): served by the varchar_pattern_ops index.
    return Q(action__startswith=value) if prefix else Q(action=value)


def _choice_error(choices) -> dict[str, str]:
    """Django's "Select a valid choice. X is not one of the available choices." names none of
    them: a client would have to find them in the schema."""
    values = ", ".join(value for value, _ in choices.choices)
    # django-filter %-formats the message with the value given.
    return {"invalid_choice": f"Select a valid choice: one of {values} (not %(value)s)."}


class _EventFilterForm(forms.Form):
    def clean(self):
        cleaned = super().clean()
        after, before = cleaned.get("occurred_after"), cleaned.get("occurred_before")
        if after is not None and before is not None and before <= after:
            # No event can match: an empty page read as "nothing happened", not as a typo.
            self.add_error(
                "occurred_before",
                f"Must be later than occurred_after ({after.isoformat()}): the range "
                "is empty (occurred_after is inclusive, occurred_before exclusive).",
            )
        return cleaned


class AuditEventFilterSet(django_filters.FilterSet):
    # strip=False: ids and types are stored as sent, leading and trailing spaces included,
    # and "exact" must find " lead" and not "lead" (a stripped " " even dropped the filter).
    event_id = django_filters.CharFilter(
        max_length=128,
        strip=False,
        help_text="Exact event_id: the idempotency key the service sent, or the one assigned.",
    )
    actor_id = django_filters.CharFilter(max_length=256, strip=False, help_text="Exact actor id.")
    actor_type = django_filters.CharFilter(
        max_length=64, strip=False, help_text="Exact actor type."
    )
    action = django_filters.CharFilter(
        method="filter_action",
        validators=list(ACTION_FILTER_VALIDATORS),
        help_text="Exact action, or a prefix with a trailing `*` (e.g. `invoice.*`).",
    )
    target_type = django_filters.CharFilter(
        max_length=64, strip=False, help_text="Exact target type."
    )
    target_id = django_filters.CharFilter(max_length=256, strip=False, help_text="Exact target id.")
    outcome = django_filters.ChoiceFilter(
        choices=Outcome.choices,
        error_messages=_choice_error(Outcome),
        help_text="Event outcome.",
    )
    severity = django_filters.ChoiceFilter(
        choices=Severity.choices,
        error_messages=_choice_error(Severity),
        help_text="Event severity.",
    )
    occurred_after = UtcDateTimeFilter(
        param="occurred_after",
        field_name="occurred_at",
        lookup_expr="gte",
        help_text="Inclusive lower bound on occurred_at (RFC 3339; no offset means UTC).",
    )
    occurred_before = UtcDateTimeFilter(
        param="occurred_before",
        field_name="occurred_at",
        lookup_expr="lt",
        help_text=(
            "Exclusive upper bound on occurred_at (RFC 3339; no offset means UTC); later "
            "than occurred_after when both are given."
        ),
    )

    class Meta:
        model = AuditEvent
        form = _EventFilterForm
        fields = [
            "event_id",
            "actor_id",
            "actor_type",
            "action",
            "target_type",
            "target_id",
            "outcome",
            "severity",
            "occurred_after",
            "occurred_before",
        ]

    def filter_action(self, queryset, name, value):
        return queryset.filter(action_q(value))


FILTER_NAMES = frozenset(AuditEventFilterSet.base_filters)


def reject_unknown_params(
    query_params,
    *,
    extra: Iterable[str] = (),
    paging: bool = True,
    filters: bool = True,
    tenant: bool = True,
) -> None:
    """400 naming every query parameter that is not ``tenant``, a filter, paging or ``extra``,
    and every one given more than once (each is single-valued: the view would read only the
    last value)."""
    allowed = (
        ({"tenant"} if tenant else set())
        | (FILTER_NAMES if filters else set())
        | (PAGING_PARAMS if paging else set())
        | set(extra)
    )
    errors: dict[str, list[str]] = {}
    unknown = set(query_params) - allowed
    for name in sorted(query_params):
        if name in unknown:
            errors[name] = [
                f"Unknown query parameter; allowed: {', '.join(sorted(allowed))}."
                if allowed
                else "Unknown query parameter; this endpoint takes none."
            ]
        elif len(query_params.getlist(name)) > 1:
            errors[name] = ["Given more than once; give it once."]
    if errors:
        raise ValidationError(errors)


def used_filters(query_params) -> dict[str, str]:
    """The filters a request actually used, as recorded in audit_log.* access events."""
    return {
        name: query_params.get(name)
        for name in sorted(FILTER_NAMES | {"tenant"})
        if query_params.get(name) not in (None, "")
    }


TENANT_PARAMETER = OpenApiParameter(
    "tenant",
    OpenApiTypes.STR,
    OpenApiParameter.QUERY,
    description=(
        "Tenant slug. Other callers may omit it (their own tenant) and get 403 for any other "
        "tenant's slug. A superuser reads the tenant named, or every tenant on list and "
        f"search when it is omitted; export and the ledger endpoints need it (400). "
        f"{EMPTY_MEANS_ABSENT}"
    ),
)


def filter_schema(name: str) -> dict:
    """The OpenAPI schema of filter ``name``, with the limits its form field enforces, so a
    schema-valid value is one the API takes (django-filter's own schema has no limits)."""
    filter_ = AuditEventFilterSet.base_filters[name]
    if name == "action":
        return {
            "type": "string",
            "maxLength": ACTION_MAX_LENGTH + 1,
            "pattern": ACTION_FILTER_PATTERN,
        }
    if isinstance(filter_, UtcDateTimeFilter):
        return {"type": "string", "format": "date-time"}
    if isinstance(filter_, django_filters.ChoiceFilter):
        return {"type": "string", "enum": sorted(value for value, _ in filter_.extra["choices"])}
    schema = {"type": "string"}
    if "max_length" in filter_.extra:
        schema["maxLength"] = filter_.extra["max_length"]
    return schema


def filter_openapi_parameters() -> list[OpenApiParameter]:
    """The filters as OpenAPI query parameters, with their limits (list, search, export)."""
    return [
        OpenApiParameter(
            name,
            filter_schema(name),
            OpenApiParameter.QUERY,
            description=f"{filter_.extra.get('help_text', '')} {EMPTY_MEANS_ABSENT}",
        )
        for name, filter_ in AuditEventFilterSet.base_filters.items()
    ]


def empty_means_absent(result, generator, request, public):
    """Marks ``allowEmptyValue: true`` on every query parameter whose description says
    ``EMPTY_MEANS_ABSENT`` (a drf-spectacular post-processing hook). Their schemas (an enum,
    a pattern, a date-time, an integer) exclude "", which the API reads as the parameter
    left out: a client or fuzzer trusting the schema was told "" is invalid. drf-spectacular
    has no per-parameter setting for it (``allow_blank`` only drops ``minLength``)."""
    operations = [op for path in result.get("paths", {}).values() for op in path.values()]
    for operation in operations:
        for parameter in operation.get("parameters", []) if isinstance(operation, dict) else ():
            says_so = EMPTY_MEANS_ABSENT in parameter.get("description", "")
            if parameter.get("in") == "query" and says_so:
                parameter["allowEmptyValue"] = True
    return result
