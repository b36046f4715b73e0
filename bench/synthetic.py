"""Filling a tenant with synthetic events straight in SQL, for the read benchmarks (query
plans, search over 1M events): far faster than ingesting them. Needs Django set up."""

import time

from django.db import connection

from audit.models import AuditEvent


def generate(*, tenant_id: int, label: str, total: int, insert_sql: str, **params) -> int:
    """Run ``insert_sql`` (an ``INSERT … SELECT`` over ``generate_series(%(start)s,
    %(stop)s)`` for ``%(tenant)s``) in chunks of 100,000 until the tenant holds ``total``
    events, printing progress; returns how many rows it added."""
    had = have = AuditEvent.objects.filter(tenant_id=tenant_id).count()
    with connection.cursor() as cursor:
        while have < total:
            stop = min(total, have + 100_000)
            started = time.monotonic()
            cursor.execute(
                insert_sql, {"tenant": tenant_id, "start": have + 1, "stop": stop, **params}
            )
            print(
                f"  {label}: rows {have + 1:,}..{stop:,} in {time.monotonic() - started:.1f}s",
                flush=True,
            )
            have = stop
    return have - had
