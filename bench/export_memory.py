"""Export memory benchmark (not a test): stream 1,000,000 events and watch the RSS.

    DATABASE_URL=postgres://localhost:5432/<scratch db> REDIS_URL=... CELERY_BROKER_URL=... \
        .venv/bin/python bench/export_memory.py [--format csv|jsonl] [--tenant plans-big]

Uses the events ``bench/read_plans.py`` generates (tenant ``plans-big``; run that first).
Goes through the real endpoint (``GET /api/v1/audit-events/export`` via Django's test
client with an API key, so authentication, filters, the access record and the
``StreamingHttpResponse`` are all in the path), consumes the stream chunk by chunk the way a
WSGI server does, and prints the process RSS (current, from /proc) every 100,000 rows and
the peak (``ru_maxrss``). Flat means: the RSS after 1,000,000 rows is within a few MB of the
RSS after the first 100,000.
"""

import argparse
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "traceledger.settings")

import django

django.setup()

from django.test import Client  # noqa: E402
from django.test.utils import setup_test_environment  # noqa: E402

from accounts.models import Tenant  # noqa: E402
from accounts.services import api_key_create  # noqa: E402
from audit.models import AuditEvent  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE / 2**20


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--format", choices=["csv", "jsonl"], default="jsonl")
    parser.add_argument("--tenant", default="plans-big")
    args = parser.parse_args()

    setup_test_environment()  # lets the test client accept the "testserver" host
    tenant = Tenant.objects.get(slug=args.tenant)
    total = AuditEvent.objects.filter(tenant=tenant).count()
    _, key = api_key_create(tenant=tenant, name="export-memory-bench", scopes=["read"])
    client = Client(HTTP_AUTHORIZATION=f"Api-Key {key}")

    print(f"tenant {tenant.slug}: {total:,} events; format {args.format}")
    print(f"before request: rss {rss_mb():.1f} MB, peak {peak_mb():.1f} MB")
    started = time.monotonic()
    response = client.get("/api/v1/audit-events/export", {"format": args.format})
    assert response.status_code == 200, response.content[:500]
    print(f"headers after {time.monotonic() - started:.2f}s: {response['Content-Disposition']}")

    rows = -1 if args.format == "csv" else 0  # the CSV header line
    size = 0
    next_mark = 100_000
    marks = []
    first_byte = None
    for chunk in response.streaming_content:
        if first_byte is None:
            first_byte = time.monotonic() - started
        rows += chunk.count(b"\n") if args.format == "jsonl" else chunk.count(b"\r\n")
        size += len(chunk)
        if rows >= next_mark:
            marks.append((rows, rss_mb(), time.monotonic() - started))
            print(f"  {rows:>9,} rows  rss {marks[-1][1]:7.1f} MB  {marks[-1][2]:6.1f}s")
            next_mark += 100_000
    response.close()
    elapsed = time.monotonic() - started
    print(
        f"done: {rows:,} rows, {size / 2**20:.0f} MiB in {elapsed:.1f}s "
        f"({rows / elapsed:,.0f} rows/s), first byte after {first_byte:.2f}s"
    )
    print(f"rss now {rss_mb():.1f} MB, peak (ru_maxrss) {peak_mb():.1f} MB")
    if len(marks) >= 2:
        print(
            f"rss growth from {marks[0][0]:,} to {marks[-1][0]:,} rows: "
            f"{marks[-1][1] - marks[0][1]:+.1f} MB"
        )


if __name__ == "__main__":
    main()
