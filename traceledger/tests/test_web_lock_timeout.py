"""A web request waits a bounded time for a database lock, then answers 503: while an
operator's `LOCK TABLE` (or a migration rewriting a table) was held, every gunicorn thread
waited on it and /healthz stopped answering with them."""

import http.client
import threading
import time

import pytest
from django.db import connection

from accounts.services import api_key_create


def _get(port: int, target: str, key: str | None = None) -> tuple[int, dict, float, bytes]:
    started = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Api-Key {key}"} if key else {}
    conn.request("GET", target, headers=headers)
    response = conn.getresponse()
    status, answer_headers = response.status, dict(response.getheaders())
    body = response.read()
    conn.close()
    return status, answer_headers, time.monotonic() - started, body


@pytest.mark.integration
def test_a_read_waiting_for_a_table_lock_gives_up_with_a_503(gunicorn_with, tenant):
    _, key = api_key_create(tenant=tenant, name="reader", scopes=["read"])
    port = gunicorn_with(TRACELEDGER_WEB_LOCK_TIMEOUT="1")
    assert _get(port, "/api/v1/audit-events", key)[0] == 200  # connection made, key cached

    with connection.cursor() as cursor:
        cursor.execute("BEGIN")
        cursor.execute("LOCK TABLE audit_auditevent IN ACCESS EXCLUSIVE MODE")
        try:
            answers = []
            readers = [
                threading.Thread(
                    target=lambda: answers.append(_get(port, "/api/v1/audit-events", key))
                )
                for _ in range(8)  # more than the 4 threads of the one gunicorn worker
            ]
            for reader in readers:
                reader.start()
            for reader in readers:
                reader.join(20)
            healthz = _get(port, "/healthz")
        finally:
            cursor.execute("ROLLBACK")

    assert [status for status, _, _, _ in answers] == [503] * 8
    assert all(headers.get("Retry-After") for _, headers, _, _ in answers)
    # Busy, not "unavailable": PostgreSQL answered, another action held the table.
    assert all(b"The database is busy" in body for _, _, _, body in answers)
    # Each waited about the lock timeout, in rounds of four threads: none waited for the lock.
    assert max(took for _, _, took, _ in answers) < 10
    assert healthz[0] == 200
    assert _get(port, "/api/v1/audit-events", key)[0] == 200  # and it reads again at once


def test_only_web_processes_get_the_lock_timeout():
    # This test process is not one (traceledger/wsgi.py marks gunicorn's): commands,
    # migrations and workers keep waiting as long as their work needs.
    assert "lock_timeout" not in connection.settings_dict["OPTIONS"].get("options", "")
