"""How fast the event admin is on a big table (docs/admin.md records the figures).

    export DATABASE_URL=postgres://localhost:5432/tl_admin   # a scratch database!
    .venv/bin/python -m bench.admin_changelist --populate 1000000
    .venv/bin/python -m bench.admin_changelist --repeat 5

``--populate N`` fills ``audit_auditevent`` with N synthetic events in one INSERT … SELECT
over ``generate_series`` (three tenants of 60 %, 30 % and 10 %, spread over 60 days, unique
``(tenant, sequence)`` and ``(tenant, event_id)``), then ANALYZEs. The hashes are random,
not a chain: this measures reads, not the ledger. It refuses to run on a table that already
holds events unless ``--force``.

Then each admin page is requested in-process with Django's test client (the full admin
stack: middleware, session, permission checks, queries, template rendering; no network) as
a superuser and as a tenant's auditor, and the median and worst wall time of ``--repeat``
runs is printed, with the number of SQL queries of one run.
"""

import argparse
import os
import statistics
import sys
import time

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "traceledger.settings")

TENANTS = (("bench-a", 0.6), ("bench-b", 0.3), ("bench-c", 0.1))

POPULATE_SQL = """
INSERT INTO audit_auditevent (
    id, tenant_id, event_id, occurred_at, received_at, stored_at, action, outcome, severity,
    actor_id, actor_type, actor_name, target_id, target_type, target_name, source_ip,
    user_agent, description, metadata, sequence, prev_hash, hash
)
SELECT
    md5(%(tenant)s || ':' || g)::uuid,
    %(tenant_id)s,
    'bench-' || g,
    %(start)s::timestamptz + (g * %(step)s) * interval '1 second',
    %(start)s::timestamptz + (g * %(step)s + 1) * interval '1 second',
    %(start)s::timestamptz + (g * %(step)s + 2) * interval '1 second',
    (ARRAY['invoice.create','invoice.update','invoice.delete','user.login','user.logout',
           'user.password.change','report.export','settings.update'])[1 + g %% 8],
    CASE WHEN g %% 20 = 0 THEN 'failure' WHEN g %% 97 = 0 THEN 'unknown' ELSE 'success' END,
    CASE WHEN g %% 1000 = 0 THEN 'critical' WHEN g %% 50 = 0 THEN 'warning'
         WHEN g %% 10 = 0 THEN 'notice' ELSE 'info' END,
    'user-' || (g %% 5000),
    CASE WHEN g %% 7 = 0 THEN 'service' ELSE 'user' END,
    'User ' || (g %% 5000),
    'obj-' || (g %% 20000),
    (ARRAY['invoice','user','report','settings'])[1 + g %% 4],
    '',
    ('10.0.' || (g %% 250) || '.' || (g %% 200))::inet,
    'bench/1.0',
    'Synthetic event ' || g || ' for the admin benchmark',
    jsonb_build_object('request_id', md5(g::text), 'amount', g %% 1000),
    g,
    lpad(to_hex(g - 1), 64, '0'),
    lpad(to_hex(g), 64, '0')
FROM generate_series(1, %(n)s) AS g
"""


def populate(total: int, force: bool) -> None:
    from django.db import connection
    from django.utils import timezone

    from accounts.models import Tenant
    from audit.models import AuditEvent

    if AuditEvent.objects.exists() and not force:
        sys.exit("audit_auditevent is not empty; use a scratch database or --force")
    start = timezone.now() - timezone.timedelta(days=60)
    for slug, share in TENANTS:
        tenant, _ = Tenant.objects.get_or_create(slug=slug, defaults={"name": slug})
        n = int(total * share)
        began = time.monotonic()
        with connection.cursor() as cursor:
            cursor.execute(
                POPULATE_SQL,
                {
                    "tenant": slug,
                    "tenant_id": tenant.pk,
                    "start": start,
                    "step": 60 * 24 * 3600 / n,
                    "n": n,
                },
            )
        print(f"{slug}: {n} events in {time.monotonic() - began:.1f} s")
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE audit_auditevent")
    print("analyzed")


def bench_users():
    from accounts.models import Role, Tenant, User

    root, _ = User.objects.get_or_create(
        username="bench-root", defaults={"is_superuser": True, "is_staff": True}
    )
    tenant = Tenant.objects.get(slug=TENANTS[0][0])
    auditor, _ = User.objects.get_or_create(
        username="bench-auditor",
        defaults={"is_staff": True, "tenant": tenant, "role": Role.AUDITOR},
    )
    return root, auditor, tenant


def scenarios(tenant_id: int, event_id: str) -> list[tuple[str, str]]:
    base = "/admin/audit/auditevent/"
    return [
        ("changelist", base),
        ("page 50", base + "?p=50"),
        ("outcome=failure", base + "?outcome__exact=failure"),
        ("severity=critical", base + "?severity__exact=critical"),
        ("action prefix user.", base + "?action_prefix=user."),
        ("actor type service", base + "?actor_type=service"),
        ("date range 7 days", base + "?occurred_from={week_ago}&occurred_to={today}"),
        ("date hierarchy month", base + "?occurred_at__year=%d&occurred_at__month=%d"),
        ("same actor", base + f"?tenant={tenant_id}&actor_type=user&actor_id=user-42"),
        ("tenant filter", base + f"?tenant={tenant_id}"),
        ("search common word", base + "?q=invoice"),
        ("search rare token", base + "?q=e10adc3949ba59abbe56e057f20f883e"),
        ("search + outcome", base + "?q=invoice&outcome__exact=failure"),
        # No login event failed: the probe reads every "login" match to find none (worst case).
        ("search, none match", base + "?q=login&outcome__exact=failure"),
        ("detail", base + f"{event_id}/change/"),
        ("dashboard", "/admin/"),
    ]


def measure(repeat: int) -> None:
    from django.db import connection, reset_queries
    from django.test import Client
    from django.test.utils import override_settings
    from django.utils import timezone

    from audit.models import AuditEvent

    root, auditor, tenant = bench_users()
    newest = AuditEvent.objects.filter(tenant=tenant).order_by("-occurred_at").first()
    if newest is None:
        sys.exit("no events: run with --populate N first")
    now = timezone.now()
    seven_days_ago = (now - timezone.timedelta(days=7)).date()
    print(f"events: ~{_estimate()} rows; PostgreSQL {connection.pg_version}")
    print(f"{'scenario':<24} {'user':<8} {'median ms':>10} {'max ms':>8} {'queries':>8}")
    for name, url in scenarios(tenant.pk, str(newest.pk)):
        if "%d" in url:
            url = url % (now.year, now.month)
        url = url.format(week_ago=seven_days_ago, today=now.date())
        for label, user in (("super", root), ("auditor", auditor)):
            client = Client(HTTP_HOST="localhost")
            client.force_login(user)
            timings = []
            for _ in range(repeat):
                began = time.perf_counter()
                response = client.get(url)
                timings.append((time.perf_counter() - began) * 1000)
                if response.status_code != 200:
                    sys.exit(f"{name} as {label}: HTTP {response.status_code}")
            with override_settings(DEBUG=True):
                reset_queries()
                client.get(url)
                queries = len(connection.queries)
            print(
                f"{name:<24} {label:<8} {statistics.median(timings):>10.0f}"
                f" {max(timings):>8.0f} {queries:>8}"
            )


def _estimate() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE relname = 'audit_auditevent'")
        return cursor.fetchone()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--populate", type=int, metavar="N", help="insert N synthetic events")
    parser.add_argument("--force", action="store_true", help="populate a non-empty table")
    parser.add_argument("--repeat", type=int, default=5, help="requests per scenario")
    args = parser.parse_args()
    django.setup()
    if args.populate:
        populate(args.populate, args.force)
    measure(args.repeat)


if __name__ == "__main__":
    main()
