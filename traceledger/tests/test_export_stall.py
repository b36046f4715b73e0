"""A streamed export whose client stops reading is cut (traceledger.stall_watch)."""

import json
import socket
import time
import urllib.error
import urllib.request

import pytest

from accounts.services import api_key_create
from audit.tests.factories import events_create


def _export_not_read(port: int, key: str) -> socket.socket:
    """An export request whose answer is never read, with a small receive buffer."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(
        b"GET /api/v1/audit-events/export?format=jsonl HTTP/1.1\r\nHost: localhost\r\n"
        + f"Authorization: Api-Key {key}\r\n\r\n".encode()
    )
    return sock


def _export_status(port: int, key: str) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1/audit-events/export?format=csv",
        headers={"Authorization": f"Api-Key {key}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as exc:
        assert exc.code == 429, exc.read()
        return exc.code


@pytest.mark.integration
def test_an_export_nobody_reads_gives_its_slot_back_after_the_stall_timeout(gunicorn_with, tenant):
    """Four such clients held every export slot, and a transaction each, for as long as they
    kept the connection: no tenant could export (security QA)."""
    # ~20 MB of JSONL: far more than the socket buffers hold (up to 4 MB each side here).
    events_create(tenant_id=tenant.pk, count=8000, description="x" * 2500)
    _, key = api_key_create(tenant=tenant, name="exporter", scopes=["read"])
    port = gunicorn_with(
        TRACELEDGER_EXPORT_STALL_TIMEOUT="4",
        TRACELEDGER_EXPORTS_PER_PROCESS="1",
        TRACELEDGER_RATELIMIT_HEAVY="1000/m",
    )
    stalled = _export_not_read(port, key)
    try:
        # The export has started, so it holds the one slot; from here on nothing is read.
        stalled.settimeout(30)
        received = stalled.recv(16)
        assert received.startswith(b"HTTP/1.1 200"), received
        assert _export_status(port, key) == 429

        deadline = time.monotonic() + 15
        while _export_status(port, key) == 429:
            assert time.monotonic() < deadline, "the stalled export kept its slot"
            time.sleep(0.5)

        # What the stalled client got: the head and part of the rows, then the end.
        stalled.settimeout(10)
        while chunk := stalled.recv(65536):
            received += chunk
        assert received.startswith(b"HTTP/1.1 200 ")
        first_row = received[received.index(b'{"') :].split(b"\n", 1)[0]
        assert json.loads(first_row)["description"] == "x" * 2500
        assert len(received) < 15_000_000
    finally:
        stalled.close()
