"""The admin as its two users drive it, in headless Chromium against a live server.

Compliance staff log in, filter, search, open an event and export CSV; an operator pulls a
dead letter from RabbitMQ, replays it and sees the event stored by a real Celery worker.
Screenshots for the README are taken on the way (``make screenshots`` refreshes docs/screenshots/).
"""

import csv
import io
import re
from datetime import UTC, datetime, timedelta

import pytest
from django.db.models import Max

from accounts.models import Tenant
from audit.models import AuditEvent, DeadLetter, DeadLetterStatus
from audit.tests.ingest_support import make_event, publish, purge_queues, queue_depth, wait_until
from audit.tests.ledger_factories import chained_events_create
from traceledger.queues import DLQ

pytestmark = [pytest.mark.browser, pytest.mark.integration]

PASSWORD = "correct-horse-battery"
DAY = datetime(2026, 3, 10, 14, 30, tzinfo=UTC)


@pytest.fixture
def clean_queues():
    purge_queues()
    yield
    purge_queues()


def log_in(page, base_url: str, username: str) -> None:
    page.goto(f"{base_url}/admin/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("#user-tools")


def compliance_trail(tenant) -> dict[str, AuditEvent]:
    """A day of ordinary traffic plus the refunds the auditor is looking for."""
    now = datetime.now(UTC)
    for hours_ago, count in [(h, 1 + (h * 7) % 5) for h in range(0, 24, 2)]:
        occurred = now - timedelta(hours=hours_ago, minutes=5 if hours_ago else 0, seconds=2)
        chained_events_create(
            tenant_id=tenant.pk,
            count=count,
            occurred_at=occurred,
            received_at=occurred + timedelta(milliseconds=180),
            action="user.login",
            actor_id=f"user-{hours_ago}",
            description="Signed in",
        )
    wanted = {}
    for key, action, outcome, when, description in [
        ("bank", "invoice.refund", "failure", DAY, "Refund to Ada rejected by the bank"),
        ("card", "invoice.refund", "failure", DAY, "Refund to Bob failed: card expired"),
        ("ok", "invoice.refund", "success", DAY, "Refund to Cy accepted by the bank"),
        ("early", "user.login", "failure", DAY - timedelta(days=8), "Bank VPN login refused"),
    ]:
        (wanted[key],) = chained_events_create(
            tenant_id=tenant.pk,
            count=1,
            occurred_at=when,
            received_at=when + timedelta(milliseconds=240),
            action=action,
            outcome=outcome,
            description=description,
            actor_id=f"clerk-{key}",
            target_id=f"inv-{key}",
            metadata={"amount": 125.5, "currency": "EUR", "reason": description},
        )
    from search.backends.postgresql import PostgresBackend

    PostgresBackend().index_events(
        event_ids=[str(pk) for pk in AuditEvent.objects.values_list("pk", flat=True)]
    )
    return wanted


def test_a_compliance_user_filters_searches_opens_an_event_and_exports_csv(
    browser_page, screenshot, tenant, teammate, clean_queues, celery_worker_process
):
    teammate.is_staff = True
    teammate.save()
    wanted = compliance_trail(tenant)
    page, base = browser_page

    log_in(page, base, "teammate")
    assert page.locator("#tl-dashboard svg rect").count() == 24
    screenshot(page, "admin-dashboard")

    page.click("text=Audit events")
    page.wait_for_selector("#result_list")
    screenshot(page, "admin-events-changelist")
    # Every column fits a 1366-pixel laptop screen, inside the list's scroll box (with
    # Django's app sidebar, outcome and severity were scrolled out of sight).
    page.set_viewport_size({"width": 1366, "height": 768})
    severity = page.locator("#result_list thead th.column-severity_display").bounding_box()
    results = page.locator("#changelist .results").bounding_box()
    assert severity["x"] + severity["width"] <= results["x"] + results["width"], (severity, results)
    page.set_viewport_size({"width": 1440, "height": 900})

    # Outcome: the filter sidebar's link; dates: the range form's two date boxes.
    page.locator('details[data-filter-title="outcome"] a', has_text="Failure").click()
    page.wait_for_url(re.compile(r"outcome__exact=failure"))
    form = page.locator('details[data-filter-title="occurred (date range)"] form')
    form.locator('input[name="occurred_from"]').fill("2026-03-10")
    form.locator('input[name="occurred_to"]').fill("2026-03-10")
    form.locator('input[type="submit"]').click()
    page.wait_for_url(re.compile(r"occurred_to=2026-03-10"))
    assert page.locator("#result_list tbody tr").count() == 2

    page.fill("#searchbar", "bank")
    page.press("#searchbar", "Enter")
    page.wait_for_url(re.compile(r"q=bank"))
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 1
    assert "outcome__exact=failure" in page.url and "occurred_from=2026-03-10" in page.url
    screenshot(page, "admin-events-filtered")

    rows.first.locator("th a").click()
    page.wait_for_selector("text=Refund to Ada rejected by the bank")
    body = page.content()
    assert str(wanted["bank"].pk) in body
    assert wanted["bank"].hash in body
    assert page.locator(".field-verification strong").inner_text() == "verified"
    assert '\n  "currency": "EUR",\n' in page.locator("pre.tl-json").inner_text()
    # The part people come for: metadata, ledger position and verification.
    page.locator("pre.tl-json").scroll_into_view_if_needed()
    page.mouse.wheel(0, 250)
    screenshot(page, "admin-event-detail")

    page.go_back()
    page.wait_for_selector("#result_list")
    with page.expect_download() as download_info:
        page.click("text=Export this list (CSV)")
    download = download_info.value
    assert download.suggested_filename.endswith(".csv")
    with open(download.path(), encoding="utf-8") as handle:
        rows = list(csv.DictReader(io.StringIO(handle.read())))
    assert [row["id"] for row in rows] == [str(wanted["bank"].pk)]
    assert rows[0]["description"] == "Refund to Ada rejected by the bank"
    assert rows[0]["outcome"] == "failure"
    assert rows[0]["hash"] == wanted["bank"].hash

    # The export itself is in the tenant's trail, stored by the real worker.
    record = wait_until(
        lambda: AuditEvent.objects.filter(tenant=tenant, action="audit_log.export").first(),
        timeout=20,
        what="the audit_log.export event",
    )
    assert record.actor_name == "teammate"
    assert record.metadata["filters"]["format"] == "csv"
    # So are the searches and event pages the user read on the way.
    search = wait_until(
        lambda: AuditEvent.objects.filter(tenant=tenant, action="audit_log.search").first(),
        timeout=20,
        what="the audit_log.search event",
    )
    assert search.metadata["filters"]["q"] == "bank"
    wait_until(
        lambda: AuditEvent.objects.filter(
            tenant=tenant, action="audit_log.read", target_id=str(wanted["bank"].pk)
        ).exists(),
        timeout=20,
        what="the audit_log.read event of the event page",
    )


def test_an_operator_pulls_a_dead_letter_replays_it_and_sees_it_stored(
    browser_page, screenshot, superuser, clean_queues, celery_worker_process
):
    # A batch for a tenant that is not provisioned yet: the worker rejects it as poison
    # and RabbitMQ dead-letters it.
    late_id = (Tenant.objects.aggregate(m=Max("pk"))["m"] or 0) + 1000
    event = make_event(action="invoice.late", description="Invoice sent before onboarding")
    publish(tenant_id=late_id, events=[event])
    wait_until(lambda: queue_depth(DLQ.name) == 1, timeout=20, what="the dead letter")
    page, base = browser_page

    log_in(page, base, "root")
    page.goto(f"{base}/admin/audit/deadletter/")
    assert "1 waiting" in page.locator(".tl-dlq-depth").inner_text()

    page.click("#tl-pull")
    page.wait_for_selector(".messagelist")
    assert "Pulled 1 dead letter(s) from RabbitMQ." in page.locator(".messagelist").inner_text()
    assert "0 waiting" in page.locator(".tl-dlq-depth").inner_text()
    row = page.locator("#result_list tbody tr")
    assert row.count() == 1
    # The reason and the exception's last line name the missing tenant.
    why = " ".join(row.locator("td.field-reason, td.field-exception_summary").all_inner_texts())
    assert str(late_id) in why
    screenshot(page, "admin-dead-letters")

    # The operator onboards the tenant, then replays the letter.
    Tenant.objects.create(pk=late_id, slug="latecomer", name="Latecomer")
    row.locator("input.action-select").check()
    page.select_option("select[name=action]", "replay_selected")
    page.click("button[name=index]")
    assert "1 dead letter" in page.locator("#content h2").inner_text()  # "Are you sure?"
    page.click("#tl-confirm")
    page.wait_for_selector(".messagelist")
    assert "Replayed 1 of 1 selected dead letter(s)" in page.locator(".messagelist").inner_text()
    assert DeadLetter.objects.get().status == DeadLetterStatus.REPLAYED

    stored = wait_until(
        lambda: AuditEvent.objects.filter(tenant_id=late_id, event_id=event["event_id"]).first(),
        timeout=20,
        what="the replayed event",
    )
    page.goto(f"{base}/admin/audit/auditevent/?tenant={late_id}")
    assert page.locator("#result_list tbody tr").count() == 1
    assert "invoice.late" in page.locator("#result_list").inner_text()
    page.goto(f"{base}/admin/audit/auditevent/{stored.pk}/change/")
    assert page.locator(".field-verification strong").inner_text() == "verified"

    # Both operator actions are in the system tenant's trail.
    for action in ("dead_letter.drain", "dead_letter.replay"):
        recorded = wait_until(
            lambda action=action: AuditEvent.objects.filter(action=action).first(),
            timeout=20,
            what=action,
        )
        # The operator as in their other actions: user id, type and name.
        assert (recorded.actor_id, recorded.actor_type, recorded.actor_name) == (
            str(superuser.pk),
            "user",
            "root",
        )


WIDEST_CONTENT = "el => Math.max(el.scrollWidth, ...[...el.children].map(c => c.scrollWidth))"


def test_a_long_unbroken_target_id_leaves_the_lists_columns_on_screen(
    browser_page, tenant, teammate
):
    """A 256-character target id widened its column to 2,760 px: outcome and severity sat
    off screen on every page that held it (admin QA)."""
    teammate.is_staff = True
    teammate.save()
    chained_events_create(tenant_id=tenant.pk, count=1, target_id="t" * 255 + "!")
    page, base = browser_page
    page.set_viewport_size({"width": 1366, "height": 768})
    log_in(page, base, "teammate")
    page.goto(f"{base}/admin/audit/auditevent/")
    page.wait_for_selector("#result_list")

    severity = page.locator("#result_list td.field-severity_display").first.bounding_box()
    assert severity["x"] + severity["width"] <= 1366, severity


def test_long_unbroken_values_on_the_event_page_wrap_inside_the_page(
    browser_page, tenant, teammate
):
    """A 2,000-character description without a space, a long URL: they ran off the right
    edge of the event page and could not be read (the page does not scroll sideways)."""
    teammate.is_staff = True
    teammate.save()
    url = "https://example.com/" + "/".join(f"segment{i:03d}" for i in range(60)) + "?q=1"
    (event,) = chained_events_create(
        tenant_id=tenant.pk,
        count=1,
        description="D" * 1999 + "!",
        user_agent=url[:512],
        actor_id="a" * 255 + "!",
        metadata={"callback": url, "token": "T" * 600},
    )
    page, base = browser_page
    page.set_viewport_size({"width": 1366, "height": 768})
    log_in(page, base, "teammate")
    page.goto(f"{base}/admin/audit/auditevent/{event.pk}/change/")
    page.wait_for_selector(".field-description")

    for field in ("description", "user_agent", "actor_id_exact", "same_actor", "metadata_pretty"):
        row = page.locator(f".form-row.field-{field}").bounding_box()
        value = page.locator(f".form-row.field-{field} .readonly")
        box = value.bounding_box()
        # The value's box stays inside its row, and its text (or the JSON's <pre>) inside it.
        assert box["x"] + box["width"] <= row["x"] + row["width"] + 1, (field, box, row)
        text_width = value.evaluate(WIDEST_CONTENT)
        assert text_width <= box["width"] + 1, (field, text_width, box)
    # Nor does anything else (the title and breadcrumbs name the actor id).
    assert page.evaluate("document.documentElement.scrollWidth") <= 1366
    # No History button to run into: an event has no change history.
    assert page.locator(".object-tools").count() == 0


def test_the_dashboards_chart_fits_a_narrow_screen(browser_page, tenant, teammate):
    """A fixed 480-pixel chart ran past a 400-pixel screen: its newest hours were hidden."""
    teammate.is_staff = True
    teammate.save()
    chained_events_create(tenant_id=tenant.pk, count=3, occurred_at=datetime.now(UTC))
    page, base = browser_page
    page.set_viewport_size({"width": 400, "height": 800})
    log_in(page, base, "teammate")
    page.goto(f"{base}/admin/")

    chart = page.locator("svg[role=img]")
    box = chart.bounding_box()
    newest = chart.locator("rect").last.bounding_box()

    assert chart.locator("rect").count() == 24
    assert box["x"] + box["width"] <= 400
    assert newest["x"] + newest["width"] <= box["x"] + box["width"] + 1


def test_the_pages_people_open_run_under_their_content_security_policy(
    browser_page, tenant, teammate
):
    """Every script of the admin and of the API docs is the page's own file: the policy
    (script-src 'self') refuses nothing that the pages need, and Swagger UI still renders."""
    teammate.is_staff = True
    teammate.save()
    [event] = chained_events_create(tenant_id=tenant.pk, count=1, occurred_at=datetime.now(UTC))
    page, base = browser_page
    refused = []
    page.on(
        "console",
        lambda message: (
            refused.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    log_in(page, base, "teammate")
    pages = [
        "/admin/",
        "/admin/audit/auditevent/",
        f"/admin/audit/auditevent/{event.pk}/change/",
        "/admin/audit/checkpoint/",
        "/api/docs/",
    ]
    for path in pages:
        response = page.goto(f"{base}{path}")
        assert "script-src 'self'" in response.headers["content-security-policy"], path
        page.wait_for_load_state("networkidle")
    page.wait_for_selector(".swagger-ui .info .title")

    assert refused == []
    assert "TraceLedger" in page.locator(".swagger-ui .info .title").inner_text()
