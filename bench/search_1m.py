"""Search benchmark (not a test): full-text search over 1,000,000 events of one tenant.

    DATABASE_URL=postgres://localhost:5432/<a scratch db> .venv/bin/python bench/search_1m.py

Generates the events in PostgreSQL with one INSERT ... SELECT (the events table is
append-only, so use a scratch database: the rows stay), builds the search entries in bulk
with the indexer's own SQL, then times searches through the same selector the API calls
(PostgreSQL backend, tenant-scoped queryset, ranking, first page of 50). Prints a table;
numbers go to docs/search.md.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "traceledger.settings")

import django

django.setup()

from django.db import connection  # noqa: E402
from django.http import QueryDict  # noqa: E402

from accounts.models import Tenant  # noqa: E402
from audit.filters import AuditEventFilterSet  # noqa: E402
from audit.models import AuditEvent  # noqa: E402
from bench import synthetic  # noqa: E402
from bench.loadgen import percentile  # noqa: E402
from search.backends.base import SearchRequest  # noqa: E402
from search.backends.postgresql import PostgresBackend  # noqa: E402

# Every 10,000th event mentions "zanzibar" (100 in 1M): the selective query. Actors and
# actions repeat, so common words match ~5% to 25% of the trail.
GENERATE_SQL = """
INSERT INTO audit_auditevent (
    id, tenant_id, event_id, occurred_at, received_at, stored_at, action, outcome, severity,
    actor_id, actor_type, actor_name, target_id, target_type, target_name, source_ip,
    user_agent, description, metadata, sequence, prev_hash, hash)
SELECT
    gen_random_uuid(), %(tenant)s, 'bench-' || i,
    timestamptz '2026-01-01' + i * interval '2 seconds',
    timestamptz '2026-01-01' + i * interval '2 seconds',
    now(),
    (ARRAY['invoice.update','invoice.create','payroll.export','user.login','user.logout',
           'report.view','report.export','key.rotate','role.grant','file.download'])[1 + i %% 10],
    (ARRAY['success','success','success','failure'])[1 + i %% 4],
    (ARRAY['info','info','notice','warning','critical'])[1 + i %% 5],
    'user-' || (i %% 5000), 'user',
    (ARRAY['Ada Lovelace','Grace Hopper','Alan Turing','Edsger Dijkstra','Barbara Liskov',
           'Donald Knuth','Margaret Hamilton','Ken Thompson'])[1 + i %% 8],
    'obj-' || (i %% 20000),
    (ARRAY['invoice','report','user','file','key'])[1 + i %% 5],
    (ARRAY['Quarterly payroll','Annual report','Customer file','Signing key'])[1 + i %% 4],
    '203.0.113.7', 'bench',
    (ARRAY['changed the billing address','exported the payroll report for March',
           'viewed the annual report','downloaded the customer file',
           'rotated the signing key','granted the auditor role'])[1 + i %% 6]
      || CASE WHEN i %% 10000 = 0 THEN ' shipped to zanzibar' ELSE '' END,
    jsonb_build_object('ticket', 'T-' || (i %% 997), 'note', 'batch ' || (i %% 50)),
    i, repeat('0', 64), md5(i::text) || md5(i::text)
FROM generate_series(%(start)s, %(stop)s) AS i
"""

QUERIES = [
    ("selective word (100 hits)", "zanzibar", {}),
    ("selective word + filter", "zanzibar", {"severity": "info"}),
    ("phrase, selective", '"shipped to zanzibar"', {}),
    ("word + exclusion", "zanzibar -payroll", {}),
    ("OR of rare words", "zanzibar OR quux", {}),
    ("selective actor (200 hits)", "user-4242", {}),
    ("common word + narrow filter", "payroll", {"actor_id": "user-42"}),
    ("common word (~17% of trail)", "payroll", {}),
]


def generate(tenant: Tenant, total: int) -> None:
    started = time.perf_counter()
    added = synthetic.generate(
        tenant_id=tenant.pk, label=tenant.slug, total=total, insert_sql=GENERATE_SQL
    )
    if not added:
        print(f"{total:,} events already stored for {tenant.slug}")
        return
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE audit_auditevent")
    print(f"generated {added:,} events in {time.perf_counter() - started:.1f} s")


def index(tenant: Tenant, chunk: int = 10_000) -> None:
    backend = PostgresBackend()
    started = time.perf_counter()
    done = 0
    last = 0
    while True:
        batch = list(
            AuditEvent.objects.filter(tenant=tenant, sequence__gt=last)
            .exclude(search_entry__isnull=False)
            .order_by("sequence")
            .values_list("id", "sequence")[:chunk]
        )
        if not batch:
            break
        backend.index_events(event_ids=[str(pk) for pk, _ in batch])
        last = batch[-1][1]
        done += len(batch)
        if done % 100_000 == 0:
            print(f"  indexed {done:,}", flush=True)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE search_eventsearchentry")
    print(f"indexed {done:,} events in {time.perf_counter() - started:.1f} s")


def measure(tenant: Tenant, runs: int) -> None:
    backend = PostgresBackend()
    print(f"\n{'query':32} {'q':24} {'hits':>6} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    for label, q, params in QUERIES:
        filterset = AuditEventFilterSet(
            data=QueryDict(mutable=True) | params,
            queryset=AuditEvent.objects.select_related("tenant").filter(tenant=tenant),
        )
        assert filterset.is_valid(), filterset.errors
        timings, hits = [], 0
        for _ in range(runs):
            request = SearchRequest(
                tenant_id=tenant.pk,
                q=q,
                queryset=filterset.qs,
                filters=filterset.form.cleaned_data,
                page_size=50,
            )
            started = time.perf_counter()
            page = backend.search(request)
            timings.append((time.perf_counter() - started) * 1000)
            hits = len(page.events)
        print(
            f"{label:32} {q:24} {hits:>6} {statistics.median(timings):>8.1f} "
            f"{percentile(timings, 95):>8.1f} {max(timings):>8.1f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--tenant", default="bench-search")
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    tenant, _ = Tenant.objects.get_or_create(slug=args.tenant, defaults={"name": "Search bench"})
    generate(tenant, args.events)
    index(tenant)
    measure(tenant, args.runs)


if __name__ == "__main__":
    main()
