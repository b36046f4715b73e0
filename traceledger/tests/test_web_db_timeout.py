"""A PostgreSQL that accepts and never answers: web requests give up, /healthz answers."""

import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
from django.db import connections

from accounts.services import api_key_create


def _get(port: int, path: str, key: str | None = None) -> tuple[int, float]:
    headers = {"Authorization": f"Api-Key {key}"} if key else {}
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers)
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            response.read()
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    return status, time.monotonic() - started


@pytest.mark.integration
def test_reads_answer_503_within_the_timeout_while_postgresql_stalls(
    gunicorn_with, fault_proxy, tenant
):
    """Before, each such request waited for as long as PostgreSQL did (7 minutes in the
    operators' drill), and once every thread waited, /healthz did too."""
    _, key = api_key_create(tenant=tenant, name="reader", scopes=["read"])
    settings = connections["default"].settings_dict
    proxy = fault_proxy(settings.get("HOST") or "127.0.0.1", int(settings.get("PORT") or 5432))
    port = gunicorn_with(
        DATABASE_URL=f"postgres://{settings['USER'] or 'postgres'}@127.0.0.1:{proxy.port}/"
        f"{settings['NAME']}",
        TRACELEDGER_WEB_DB_TIMEOUT="2",
    )
    assert _get(port, "/api/v1/audit-events", key)[0] == 200

    proxy.set_mode("stall")
    try:
        with ThreadPoolExecutor(12) as pool:  # more than the worker's 4 threads
            reads = [pool.submit(_get, port, "/api/v1/audit-events", key) for _ in range(12)]
            time.sleep(1)
            health = _get(port, "/healthz")
            answers = [read.result() for read in reads]
    finally:
        proxy.set_mode("pass")

    assert health[0] == 200
    assert {status for status, _ in answers} == {503}, answers
    # 12 requests on 4 threads, each up to the 2 s timeout (and a 2 s reconnect): ~3 rounds.
    assert max(took for _, took in answers) < 30, answers
    assert _get(port, "/api/v1/audit-events", key)[0] == 200


def test_only_web_processes_bound_their_waits(settings):
    """Workers and commands keep their own limits: an ingest or a purge may rightly wait
    longer on a busy server."""
    from traceledger.db.base import DatabaseWrapper, DeadlineConnection

    params = connections["default"].get_connection_params()
    settings.TRACELEDGER_WEB_DB_TIMEOUT = 0.5  # then GRACE (2 s) for PostgreSQL's cancel
    for process, bounded in (("", False), ("web", True)):
        settings.TRACELEDGER_PROCESS = process
        wrapper = DatabaseWrapper(connections["default"].settings_dict, alias="probe")
        connection = wrapper.get_new_connection(params)
        try:
            assert isinstance(connection, DeadlineConnection) is bounded
            if bounded:
                with pytest.raises(psycopg.OperationalError, match=r"did not answer within 2\.5 s"):
                    connection.execute("SELECT pg_sleep(4)")
                assert connection.closed
        finally:
            connection.close()


@pytest.mark.integration
def test_a_slow_statement_is_cancelled_by_postgresql_not_left_running(gunicorn_with, tenant):
    """The web gave up on its connection and left the query running on a server that was only
    slow: each retry started another (regression QA). Web sessions carry a statement_timeout
    of TRACELEDGER_WEB_DB_TIMEOUT: PostgreSQL cancels, the answer is 503 "busy"."""
    _, key = api_key_create(tenant=tenant, name="reader", scopes=["read"])
    settings = connections["default"].settings_dict
    port = gunicorn_with(TRACELEDGER_WEB_DB_TIMEOUT="1")
    assert _get(port, "/api/v1/audit-events", key)[0] == 200
    conninfo = {
        "dbname": settings["NAME"],
        "user": settings["USER"] or "postgres",
        "host": settings.get("HOST") or "127.0.0.1",
        "port": settings.get("PORT") or 5432,
    }
    with psycopg.connect(**conninfo) as locker:
        locker.execute("LOCK TABLE audit_auditevent IN ACCESS EXCLUSIVE MODE")
        status, took = _get(port, "/api/v1/audit-events", key)
        waiting = locker.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND state = 'active' "
            "AND wait_event_type = 'Lock'",
            [settings["NAME"]],
        ).fetchone()[0]

    assert status == 503 and took < 10, (status, took)
    assert waiting == 0
