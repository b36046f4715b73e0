"""The bench's verdict on target 3 (bench/sustain.py) and its load generator's handling of
back-pressure (bench/loadgen.py): pure units, plus a throwaway local HTTP server."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bench.loadgen import LoadGenerator
from bench.sustain import sustain_growth


def test_a_backlog_that_keeps_growing_is_not_bounded():
    # 60 s run; depth and lag rise steadily, as when the workers fall behind.
    samples = [(t, 100 * t) for t in range(61)]
    rows = [(t / 10, t / 20) for t in range(600)]  # lag grows with the time received
    growth = sustain_growth(rows=rows, depth_samples=samples, seconds=60)
    assert growth["depth_growth"] > 1.4
    assert growth["lag_growth"] > 1.4
    assert growth["queue_depth_max_by_third"] == [1900, 3900, 6000]


def test_a_capped_backlog_is_flat_and_the_drain_after_the_run_is_ignored():
    samples = [(t, min(100 * t, 1000)) for t in range(61)] + [(70, 0), (80, 0)]
    rows = [(t / 10, min(t / 100, 2.0) + (t % 7) / 100) for t in range(600)]
    growth = sustain_growth(rows=rows, depth_samples=samples, seconds=60)
    assert growth["depth_growth"] == 1.0
    assert growth["lag_growth"] <= 1.05
    assert growth["queue_depth_max_by_third"] == [1000, 1000, 1000]


def test_a_queue_that_stays_near_empty_counts_as_flat():
    samples = [(t, t % 3) for t in range(61)]
    rows = [(t / 10, 0.02 + (t % 2) * 0.02) for t in range(600)]
    growth = sustain_growth(rows=rows, depth_samples=samples, seconds=60)
    assert growth["depth_growth"] <= 1.2
    assert growth["lag_growth"] <= 1.2


class _Refusing(BaseHTTPRequestHandler):
    """429 (Retry-After: 0) for the first two requests, then 202."""

    calls = 0
    lock = threading.Lock()

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        with self.lock:
            type(self).calls += 1
            refuse = self.calls <= 2
        self.send_response(429 if refuse else 202)
        if refuse:
            self.send_header("Retry-After", "0")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


@pytest.fixture
def refusing_server():
    _Refusing.calls = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Refusing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_the_load_generator_waits_out_429s_without_counting_them_as_failures(refusing_server):
    generator = LoadGenerator(
        host="127.0.0.1",
        port=refusing_server.server_address[1],
        path="/",
        headers={},
        clients=1,
        max_attempts=1,  # a 429 must not use up the single attempt
    )
    result = generator.run([(b"[]", 3)])
    assert result.errors == []
    assert result.events_accepted == 3
    assert result.statuses == {429: 2, 202: 1}
    assert result.retries == 0


def test_the_load_generator_spreads_bodies_over_the_time_asked(refusing_server):
    # The soak's faults must meet the posting: 5 bodies spread over 0.5 s leave the last one
    # at 0.4 s however fast the server answers (this server answers in microseconds).
    generator = LoadGenerator(
        host="127.0.0.1",
        port=refusing_server.server_address[1],
        path="/",
        headers={},
        clients=4,
    )
    result = generator.run([(b"[]", 1)] * 5, spread=0.5)
    assert result.events_accepted == 5
    assert result.wall >= 0.4
