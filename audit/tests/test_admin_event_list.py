"""The event list's columns, times, date drill-down and result count."""

import re
from datetime import UTC, datetime

import pytest
from django.db import connection
from django.db.models import Count
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import formats, timezone

from audit.admin import listing
from audit.admin.events import AuditEventAdmin
from audit.admin.listing import BoundedDatesQuerySet
from audit.models import AuditEvent
from audit.tests.factories import events_create

CHANGELIST = reverse("admin:audit_auditevent_changelist")


@pytest.fixture(autouse=True)
def recorded(monkeypatch):
    """The admin's access records (audit_log.read), not submitted here."""
    calls = []
    monkeypatch.setattr(
        "audit.services.submission.record_system_event", lambda **kw: calls.append(kw)
    )
    return calls


@pytest.fixture
def auditor(teammate):
    teammate.is_staff = True
    teammate.save()
    return teammate


@pytest.fixture
def browse(client, auditor):
    client.force_login(auditor)
    return client


def rows(response) -> list[AuditEvent]:
    assert response.status_code == 200, response.content[:500]
    return list(response.context["cl"].result_list)


# --- the date drill-down lists years that hold events, by index probes ----------------------


def test_the_year_drill_down_lists_only_years_holding_events_without_a_distinct_scan(
    browse, tenant
):
    events_create(
        tenant_id=tenant.pk,
        count=3,
        per_event=lambda i: {
            "occurred_at": [
                datetime(1, 1, 1, 12, tzinfo=UTC),  # one bad timestamp ...
                datetime(2024, 6, 1, 9, tzinfo=UTC),
                datetime(2026, 3, 5, 9, tzinfo=UTC),
            ][i]
        },
    )

    with CaptureQueriesContext(connection) as queries:
        body = browse.get(CHANGELIST).content.decode()

    # ... is one more year link, not 2,025 of them.
    assert re.findall(r'href="\?occurred_at__year=(\d+)"', body) == ["1", "2024", "2026"]
    sql = " ".join(q["sql"] for q in queries.captured_queries).upper()
    assert "DISTINCT" not in sql and "DATE_TRUNC" not in sql and "MIN(" not in sql
    year_one = browse.get(CHANGELIST, {"occurred_at__year": 1})
    assert [e.occurred_at.year for e in rows(year_one)] == [1]


def test_the_year_probes_are_capped_and_keep_the_last_year(tenant, monkeypatch):
    years = [2019, 2020, 2021, 2022, 2026]
    events_create(
        tenant_id=tenant.pk,
        count=len(years),
        per_event=lambda i: {"occurred_at": datetime(years[i], 7, 1, tzinfo=UTC)},
    )
    monkeypatch.setattr(listing, "YEAR_PROBES_MAX", 2)
    queryset = AuditEvent.objects.filter(tenant_id=tenant.pk)
    bounded = BoundedDatesQuerySet(model=AuditEvent, query=queryset.query)

    with CaptureQueriesContext(connection) as queries:
        found = bounded.datetimes("occurred_at", "year")

    assert [d.year for d in found] == [2019, 2020, 2021, 2026]
    assert len(queries.captured_queries) == 2 + 2  # the two bounds, then the capped probes
    assert bounded.aggregate(n=Count("pk")) == {"n": 5}  # other aggregates run as usual
    newest_first = bounded.datetimes("occurred_at", "year", order="DESC")
    assert [d.year for d in newest_first] == [2026, 2021, 2020, 2019]


# --- severity sorts by rank -----------------------------------------------------------------


def test_the_severity_column_sorts_by_rank_not_alphabetically(browse, tenant):
    severities = ["info", "critical", "notice", "warning", "info"]
    events_create(
        tenant_id=tenant.pk,
        count=len(severities),
        per_event=lambda i: {"severity": severities[i]},
    )
    column = browse.get(CHANGELIST).context["cl"].list_display.index("severity_display")

    descending = rows(browse.get(CHANGELIST, {"o": f"-{column}"}))
    ascending = rows(browse.get(CHANGELIST, {"o": f"{column}"}))

    assert [e.severity for e in descending] == ["critical", "warning", "notice", "info", "info"]
    assert [e.severity for e in ascending] == ["info", "info", "notice", "warning", "critical"]
    body = browse.get(CHANGELIST).content.decode()
    assert '<td class="field-severity_display">Critical</td>' in body


# --- times to the second, with the zone -----------------------------------------------------


def test_times_show_seconds_and_the_zone_in_the_list_and_on_the_event_page(browse, tenant):
    [event] = events_create(
        tenant_id=tenant.pk, occurred_at=datetime(2026, 11, 24, 22, 14, 5, 120000, tzinfo=UTC)
    )

    listed = browse.get(CHANGELIST).content.decode()
    detail = browse.get(reverse("admin:audit_auditevent_change", args=[event.pk]))

    assert "2026-11-24 22:14:05 UTC" in listed
    body = detail.content.decode()
    assert "2026-11-24 22:14:05 UTC" in body  # occurred at
    assert "2026-11-24 22:14:05 UTC" in body.split("received")[1]  # received 250 ms later
    for django_default in ("p.m.", "Nov. 24"):
        assert django_default not in listed and django_default not in body


def test_the_datetime_format_names_the_current_zone():
    moment = datetime(2026, 11, 24, 22, 14, 5, tzinfo=UTC)
    with timezone.override("America/New_York"):
        shown = formats.date_format(timezone.localtime(moment), "DATETIME_FORMAT")
    assert shown == "2026-11-24 17:14:05 EST"


# --- "Show all" only where it shows all ------------------------------------------------------


def test_show_all_is_offered_only_where_it_shows_all(browse, tenant, monkeypatch):
    events_create(tenant_id=tenant.pk, count=60)  # more than a page (50)
    monkeypatch.setattr(AuditEventAdmin, "list_max_show_all", 55)

    unfiltered = browse.get(CHANGELIST)
    filtered = browse.get(CHANGELIST, {"outcome__exact": "success"})

    # Unfiltered, with more rows than fit on one page: nothing called "Show all" (the search
    # bar's link went to "?", the very same page).
    assert "Show all" not in unfiltered.content.decode()
    assert len(rows(unfiltered)) == 50
    # Filtered, its link goes to the unfiltered list: all events.
    assert 'results (<a href="?">Show all</a>)' in filtered.content.decode()


def test_show_all_on_one_page_lists_every_row(browse, tenant):
    events_create(tenant_id=tenant.pk, count=60)

    page = browse.get(CHANGELIST).content.decode()
    everything = browse.get(CHANGELIST, {"all": ""})

    assert 'class="showall"' in page
    assert len(rows(everything)) == 60


def test_show_all_is_offered_only_below_the_exact_count_threshold():
    # A count at most list_max_show_all is then always exact, never a planner estimate.
    assert AuditEventAdmin.list_max_show_all < listing.EXACT_COUNT_LIMIT
