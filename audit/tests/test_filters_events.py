"""AuditEventFilterSet: each filter alone, combined (property test), and bad values."""

import random
from datetime import timedelta

import pytest
from django.http import QueryDict
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit.filters import AuditEventFilterSet
from audit.models import AuditEvent
from audit.tests.factories import BASE_TIME, events_create

ACTIONS = ["invoice.update", "invoice.create", "invoice_x.delete", "user.login", "user.logout"]
ACTOR_IDS = ["alice", "bob", "carol"]
ACTOR_TYPES = ["user", "service"]
TARGETS = [None, ("invoice", "inv-1"), ("invoice", "inv-2"), ("user", "inv-1")]
OUTCOMES = ["success", "failure", "unknown"]
SEVERITIES = ["info", "notice", "warning", "critical"]


def _filtered(params: dict) -> list:
    filterset = AuditEventFilterSet(data=QueryDict(mutable=True) | params, queryset=_all())
    assert filterset.is_valid(), filterset.errors
    return list(filterset.qs.values_list("pk", flat=True))


def _all():
    return AuditEvent.objects.order_by("-occurred_at", "-id")


@pytest.fixture
def dataset(tenant):
    """~120 events over small value domains, so that every combination has some hits."""
    rng = random.Random(20261129)

    def per_event(i):
        target = rng.choice(TARGETS)
        return {
            "action": rng.choice(ACTIONS),
            "actor_id": rng.choice(ACTOR_IDS),
            "actor_type": rng.choice(ACTOR_TYPES),
            "target": None if target is None else {"type": target[0], "id": target[1], "name": ""},
            "outcome": rng.choice(OUTCOMES),
            "severity": rng.choice(SEVERITIES),
            # many events share a timestamp: boundaries must be exact, not approximate
            "occurred_at": BASE_TIME + timedelta(minutes=rng.randrange(0, 40)),
        }

    return events_create(tenant_id=tenant.pk, count=120, per_event=per_event)


def _matches(event: AuditEvent, params: dict) -> bool:
    """The Python reference: the documented semantics of each filter."""
    for name, value in params.items():
        if name == "action":
            ok = (
                event.action.startswith(value[:-1])
                if value.endswith("*")
                else event.action == value
            )
        elif name == "occurred_after":
            ok = event.occurred_at >= BASE_TIME + timedelta(minutes=value)
        elif name == "occurred_before":
            ok = event.occurred_at < BASE_TIME + timedelta(minutes=value)
        else:
            ok = getattr(event, name) == value
        if not ok:
            return False
    return True


def _as_query(params: dict) -> dict:
    query = dict(params)
    for name in ("occurred_after", "occurred_before"):
        if name in query:
            query[name] = (BASE_TIME + timedelta(minutes=query[name])).isoformat()
    return query


FILTER_VALUES = {
    "actor_id": st.sampled_from([*ACTOR_IDS, "nobody"]),
    "actor_type": st.sampled_from(ACTOR_TYPES),
    "action": st.sampled_from([*ACTIONS, "invoice.*", "invoice*", "user.*", "invoice_*", "nope"]),
    "target_type": st.sampled_from(["invoice", "user", ""]),
    "target_id": st.sampled_from(["inv-1", "inv-2"]),
    "outcome": st.sampled_from(OUTCOMES),
    "severity": st.sampled_from(SEVERITIES),
    "occurred_after": st.integers(min_value=0, max_value=40),
    "occurred_before": st.integers(min_value=0, max_value=40),
}


@pytest.mark.django_db
@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    params=st.dictionaries(st.sampled_from(sorted(FILTER_VALUES)), st.none(), max_size=5).flatmap(
        lambda keys: st.fixed_dictionaries({k: FILTER_VALUES[k] for k in keys})
    )
)
def test_it_returns_exactly_the_events_the_reference_matches(dataset, params):
    params = {k: v for k, v in params.items() if v != ""}
    if params.get("occurred_before", 41) <= params.get("occurred_after", -1):
        # An empty range is refused, naming its end, rather than answered with nothing.
        filterset = AuditEventFilterSet(
            data=QueryDict(mutable=True) | _as_query(params), queryset=_all()
        )
        assert not filterset.is_valid()
        assert list(filterset.errors) == ["occurred_before"]
        return
    expected = [
        e.pk
        for e in sorted(dataset, key=lambda e: (e.occurred_at, e.pk), reverse=True)
        if _matches(e, params)
    ]
    assert _filtered(_as_query(params)) == expected


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("actor_id", "bob"),
        ("actor_type", "service"),
        ("action", "user.login"),
        ("action", "invoice.*"),
        ("target_type", "invoice"),
        ("target_id", "inv-2"),
        ("outcome", "failure"),
        ("severity", "critical"),
    ],
)
def test_it_narrows_by_each_filter_alone(dataset, name, value):
    expected = {e.pk for e in dataset if _matches(e, {name: value})}
    assert expected, "the data set must have hits for this filter"
    assert expected != {e.pk for e in dataset}, "the filter must exclude something"
    assert set(_filtered({name: value})) == expected


@pytest.mark.django_db
def test_it_finds_an_event_by_the_event_id_its_service_sent(dataset):
    [wanted] = events_create(tenant_id=dataset[0].tenant_id, count=1, event_id="inv-7-update-1")
    # Exact and case-sensitive, like the idempotency key it is.
    assert _filtered({"event_id": "inv-7-update-1"}) == [wanted.pk]
    assert _filtered({"event_id": "INV-7-UPDATE-1"}) == []
    assert _filtered({"event_id": dataset[3].event_id}) == [dataset[3].pk]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("name", "spaced", "plain"),
    [
        ("event_id", " lead", "lead"),
        ("actor_id", " sp", "sp"),
        ("target_id", "tg ", "tg"),
        ("actor_type", "svc ", "svc"),
        ("target_type", " doc", "doc"),
    ],
)
def test_it_matches_ids_and_types_as_stored_spaces_included(tenant, name, spaced, plain):
    """Ingest keeps leading and trailing spaces; a stripped filter value found the other
    event, and " " alone dropped the filter and returned the whole trail (integrity QA)."""

    def fields(value):
        if name in ("target_id", "target_type"):
            other = "type" if name == "target_id" else "id"
            return {"target": {name.removeprefix("target_"): value, other: "x", "name": ""}}
        return {name: value}

    [with_spaces] = events_create(tenant_id=tenant.pk, count=1, **fields(spaced))
    [without] = events_create(tenant_id=tenant.pk, count=1, **fields(plain))
    assert getattr(with_spaces, name) == spaced and getattr(without, name) == plain
    assert _filtered({name: spaced}) == [with_spaces.pk]
    assert _filtered({name: plain}) == [without.pk]
    assert _filtered({name: " "}) == []


@pytest.mark.django_db
def test_it_treats_occurred_after_as_inclusive_and_occurred_before_as_exclusive(tenant):
    at = BASE_TIME + timedelta(minutes=5)
    [event] = events_create(tenant_id=tenant.pk, count=1, occurred_at=at)
    assert _filtered({"occurred_after": at.isoformat()}) == [event.pk]
    assert _filtered({"occurred_before": at.isoformat()}) == []
    assert _filtered({"occurred_before": (at + timedelta(microseconds=1)).isoformat()}) == [
        event.pk
    ]


@pytest.mark.django_db
def test_it_reads_a_timestamp_without_offset_as_utc(tenant):
    at = BASE_TIME + timedelta(minutes=5)
    [event] = events_create(tenant_id=tenant.pk, count=1, occurred_at=at)
    naive = at.replace(tzinfo=None).isoformat()
    assert _filtered({"occurred_after": naive}) == [event.pk]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "text",
    [
        "2026-03-01T12:05:00.123456z",
        "2026-03-01t12:05:00.123456Z",
        "2026-03-01t12:05:00.123456z",
        "2026-03-01 12:05:00.123456z",
        "2026-03-01t13:05:00.123456+01:00",
        "2026-03-01t12:05:00.1234567z",  # more than 6 fraction digits: Django's own pattern
    ],
)
def test_it_reads_a_lowercase_t_and_z_as_rfc_3339_and_ingest_do(tenant, text):
    at = BASE_TIME + timedelta(minutes=5)
    [event] = events_create(tenant_id=tenant.pk, count=1, occurred_at=at)
    assert _filtered({"occurred_after": text}) == [event.pk]
    assert _filtered({"occurred_before": text}) == []


@pytest.mark.django_db
def test_it_does_not_treat_an_underscore_in_an_action_prefix_as_a_wildcard(tenant):
    events_create(tenant_id=tenant.pk, count=1, action="invoicex.update")
    [kept] = events_create(tenant_id=tenant.pk, count=1, action="invoice_x.update")
    assert _filtered({"action": "invoice_*"}) == [kept.pk]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("occurred_after", "yesterday"),
        ("occurred_before", "2026-13-01T00:00:00Z"),
        ("occurred_after", "٢٠٢٦-03-01T12:00:00Z"),  # Arabic-Indic digits
        ("occurred_after", "2026-03-01T12:00:00.1234567\uff3a"),
        ("outcome", "maybe"),
        ("severity", "fatal"),
        ("action", "*"),
        ("action", "in voice.*"),
        ("action", "invoice.*.update"),
        ("actor_id", "x" * 257),
        ("event_id", "x" * 129),
    ],
)
def test_it_rejects_an_invalid_value_naming_the_field(name, value):
    filterset = AuditEventFilterSet(data=QueryDict(mutable=True) | {name: value}, queryset=_all())
    assert not filterset.is_valid()
    assert list(filterset.errors) == [name]
