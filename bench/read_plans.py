"""Query plans of the read side (not a test): every list filter on 1,000,000+ events.

    DATABASE_URL=postgres://localhost:5432/<a scratch db> .venv/bin/python bench/read_plans.py

Generates two tenants' events with ``generate_series`` (1,000,000 for "big", 100,000 for
"small"; skewed values so that rare filters exist: 0.5% critical, 1% unknown outcome, a few
hot actors), ANALYZEs, then runs ``EXPLAIN (ANALYZE, BUFFERS)`` on the exact query the list
endpoint sends (``event_queryset`` → ``AuditEventFilterSet`` → keyset page of 101 rows) for
every single filter, every pair and a set of wider combinations, first page and a deep
cursor page. Prints one line per query: index used, rows read, time. The events table is
append-only, so use a scratch database (the rows stay). Results go to docs/read-performance.md.
"""

import argparse
import itertools
import os
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "traceledger.settings")

import django

django.setup()

from django.db import connection  # noqa: E402
from django.db.models import Q  # noqa: E402
from django.http import QueryDict  # noqa: E402

from accounts.models import Tenant  # noqa: E402
from accounts.principal import Principal  # noqa: E402
from audit.filters import AuditEventFilterSet  # noqa: E402
from audit.selectors import event_queryset  # noqa: E402
from bench import synthetic  # noqa: E402

GENERATE_SQL = """
INSERT INTO audit_auditevent (
    id, tenant_id, event_id, occurred_at, received_at, stored_at, action, outcome, severity,
    actor_id, actor_type, actor_name, target_id, target_type, target_name, source_ip,
    user_agent, description, metadata, sequence, prev_hash, hash)
SELECT
    gen_random_uuid(), %(tenant)s, 'plan-' || i, at, at, now(),
    (ARRAY['invoice','payroll','user','report','key','role','file','session'])
      [1 + floor(r1 * 8)::int] || '.' ||
    (ARRAY['create','update','delete','view','export','login','rotate','grant'])
      [1 + floor(r2 * 8)::int],
    CASE WHEN r3 < 0.93 THEN 'success' WHEN r3 < 0.99 THEN 'failure' ELSE 'unknown' END,
    CASE WHEN r4 < 0.80 THEN 'info' WHEN r4 < 0.95 THEN 'notice'
         WHEN r4 < 0.995 THEN 'warning' ELSE 'critical' END,
    'user-' || (power(r5, 3) * 5000)::int,
    CASE WHEN r6 < 0.85 THEN 'user' WHEN r6 < 0.97 THEN 'service' ELSE 'system' END,
    'Ada Lovelace',
    CASE WHEN r7 < 0.05 THEN '' ELSE 'obj-' || (r8 * 50000)::int END,
    CASE WHEN r7 < 0.05 THEN ''
         ELSE (ARRAY['invoice','report','user','file','key','role','payroll','tenant'])
           [1 + floor(r7 * 80)::int %% 8] END,
    '', '203.0.113.7', 'plans', 'generated for query plans',
    jsonb_build_object('n', i),
    i, repeat('0', 64), md5(i::text) || md5(i::text)
FROM (
    SELECT i,
           timestamptz '2025-03-01' + i * (%(step)s * interval '1 millisecond') AS at,
           random() AS r1, random() AS r2, random() AS r3, random() AS r4, random() AS r5,
           random() AS r6, random() AS r7, random() AS r8
    FROM generate_series(%(start)s, %(stop)s) AS i
) AS g
"""

# A value for each filter, chosen to span selectivities (see the generator above).
VALUES = {
    "actor_id": "user-4000",  # ~0.01%
    "actor_type": "system",  # 3%
    "action": "payroll.*",  # prefix, 12.5%
    "target_type": "payroll",  # ~12%
    "target_id": "obj-4242",  # ~0.002%
    "outcome": "unknown",  # 1%
    "severity": "critical",  # 0.5%
    "occurred_after": "2025-09-01T00:00:00Z",
    "occurred_before": "2025-09-08T00:00:00Z",
}
EXTRA_CASES = [
    {"action": "payroll.export"},
    {"actor_id": "user-0"},  # the hottest actor (~21%)
    {"outcome": "success"},
    {"severity": "info"},
    {"severity": "critical", "outcome": "unknown"},  # ~0.005%: the worst case for a scan
    {"severity": "critical", "outcome": "unknown", "actor_type": "system"},
    {"action": "payroll.export", "occurred_after": "2025-09-01T00:00:00Z"},
    {"target_type": "payroll", "target_id": "obj-4242", "occurred_before": "2025-09-08T00:00:00Z"},
    dict(VALUES),
]


def generate(tenant: Tenant, total: int) -> None:
    # one year of events whatever the total: several per second, ties on occurred_at exist
    step = max(1, int(365 * 86400 * 1000 / total))
    synthetic.generate(
        tenant_id=tenant.pk, label=tenant.slug, total=total, insert_sql=GENERATE_SQL, step=step
    )


def principal(tenant: Tenant) -> Principal:
    return Principal(kind="api_key", name="plans", tenant_id=tenant.pk, scopes=frozenset({"read"}))


def page_query(tenant: Tenant, params: dict, *, deep: bool):
    queryset = event_queryset(principal=principal(tenant))
    filterset = AuditEventFilterSet(data=QueryDict(mutable=True) | params, queryset=queryset)
    assert filterset.is_valid(), filterset.errors
    queryset = filterset.qs
    if deep:
        # the keyset condition of EventCursorPagination at the median row of the result
        middle = queryset.values_list("occurred_at", "id")[5000:5001]
        row = list(middle)
        if not row:
            return None
        at, pk = row[0]
        queryset = queryset.filter(
            Q(occurred_at__lte=at) & (Q(occurred_at__lt=at) | Q(occurred_at=at, id__lt=pk))
        )
    return queryset.order_by("-occurred_at", "-id")[:101]


def summarise(plan: str) -> tuple[str, str, float]:
    indexes = sorted(
        set(
            re.findall(
                r"(?:Index|Index Only|Bitmap Index) Scan (?:Backward )?(?:using|on) (\w+)", plan
            )
        )
    )
    seq = "Seq Scan" in plan
    total = float(re.search(r"Execution Time: ([\d.]+) ms", plan).group(1))
    rows_removed = sum(int(n) for n in re.findall(r"Rows Removed by Filter: (\d+)", plan))
    return ("SEQ SCAN " if seq else "") + ",".join(indexes), f"{rows_removed}", total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--big", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=100_000)
    parser.add_argument("--verbose", action="store_true", help="print whole plans")
    args = parser.parse_args()

    big, _ = Tenant.objects.get_or_create(slug="plans-big", defaults={"name": "Plans big"})
    small, _ = Tenant.objects.get_or_create(slug="plans-small", defaults={"name": "Plans small"})
    generate(big, args.big)
    generate(small, args.small)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE audit_auditevent")
        cursor.execute("SELECT count(*) FROM audit_auditevent")
        print(f"events in table: {cursor.fetchone()[0]:,}")

    names = list(VALUES)
    cases = [{n: VALUES[n]} for n in names]
    cases += [{a: VALUES[a], b: VALUES[b]} for a, b in itertools.combinations(names, 2)]
    cases += EXTRA_CASES
    worst = []
    print(f"{'filters':<78} {'page':<5} {'index':<48} {'filtered':>9} {'ms':>8}")
    for params in [{}, *cases]:
        for deep in (False, True):
            query = page_query(big, params, deep=deep)
            if query is None:
                continue
            plan = query.explain(analyze=True, buffers=True)
            index, removed, ms = summarise(plan)
            label = " ".join(f"{k}={v}" for k, v in params.items()) or "(none)"
            page = "deep" if deep else "first"
            print(f"{label[:78]:<78} {page:<5} {index[:48]:<48} {removed:>9} {ms:>8.1f}")
            worst.append((ms, label, deep, plan))
            if args.verbose:
                print(plan)
    worst.sort(reverse=True)
    print("\nslowest five:")
    for ms, label, deep, plan in worst[:5]:
        print(f"--- {ms:.1f} ms  {label}  ({'deep' if deep else 'first'} page)\n{plan}\n")


if __name__ == "__main__":
    main()
