"""``make schemathesis``: fuzz every operation of ``/api/schema/`` with valid credentials.

Starts the product's web (``traceledger.settings``: the bench's naive endpoint is not in this
schema) and a worker against a fresh database, creates a tenant with an ``ingest,read`` API
key and a few stored events, then runs schemathesis with ``CHECKS``: any 5xx fails the run,
and so does a response whose status code, content type, body or headers the schema does not
describe (what a generated client would trip on). Extra arguments after ``--`` go to
``schemathesis run``.
"""

import argparse
import http.client
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

from bench.environment import ROOT, Services, prepare, process_env
from bench.events import event_dicts, request_bodies
from bench.loadgen import LoadGenerator
from bench.processes import Web, Worker

CHECKS = ",".join(
    (
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "response_headers_conformance",
    )
)


def say(text: str) -> None:
    print(f"[schemathesis] {text}", file=sys.stderr, flush=True)


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m bench.schemathesis_run")
    parser.add_argument("--max-examples", type=int, default=25, help="per operation")
    parser.add_argument("--port", type=int, default=8173)
    parser.add_argument(
        "--database-url", default="postgres://localhost:5432/traceledger_bench_schemathesis"
    )
    parser.add_argument(
        "--broker-url", default="amqp://guest:guest@localhost:5672/traceledger_bench_schemathesis"
    )
    parser.add_argument("--redis-url", default="redis://localhost:6379/13")
    parser.add_argument("extra", nargs=argparse.REMAINDER, help="-- then schemathesis options")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    services = Services(args.database_url, args.broker_url, args.redis_url)
    run_id = uuid.uuid4().hex[:10]
    logs = Path(ROOT) / "var" / "schemathesis" / run_id
    say(f"database {services.database_name}, vhost {services.vhost}; logs in {logs}")
    prepare(services=services)
    from accounts.services import api_key_create, tenant_get_or_create

    tenant, _ = tenant_get_or_create(slug="schemathesis")
    _, key = api_key_create(tenant=tenant, name="schemathesis", scopes=["ingest", "read"])
    env = process_env(
        services=services,
        metrics_dir=logs / "metrics",
        DJANGO_SETTINGS_MODULE="traceledger.settings",
    )
    web = Web(port=args.port, env=env, log_path=logs / "web.log")
    worker = Worker(env=env, log_path=logs / "worker.log", node="schemathesis")
    try:
        web.start()
        worker.start()
        web.wait_ready()
        worker.wait_ready()
        # Some stored events, so that reads, details and exports have rows to return.
        LoadGenerator(
            host="127.0.0.1",
            port=args.port,
            path="/api/v1/audit-events",
            headers={"Authorization": f"Api-Key {key}"},
            clients=2,
        ).run(request_bodies(event_dicts(run_id=run_id, phase="seed", count=60), batch_size=20))
        _wait_schema(args.port)
        extra = [a for a in args.extra if a != "--"]
        command = [
            shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or "schemathesis",
            "run",
            f"http://127.0.0.1:{args.port}/api/schema/",
            "--header",
            f"Authorization: Api-Key {key}",
            "--checks",
            CHECKS,
            "--max-examples",
            str(args.max_examples),
            "--request-timeout",
            "15",
            "--generation-database",
            "none",
            "--report",
            "junit",
            "--report-dir",
            str(logs),
            "--no-color",
            *extra,
        ]
        say(
            "running: "
            + " ".join(
                c if not c.startswith("Authorization") else "Authorization: Api-Key ***"
                for c in command
            )
        )
        returncode = subprocess.run(command, cwd=ROOT, check=False).returncode
    finally:
        worker.stop()
        web.stop()
    server_errors = _server_errors(logs / "web.log")
    if server_errors:
        say(f"the web log shows {len(server_errors)} server errors, e.g. {server_errors[:3]}")
    say(
        "PASS: no 5xx, every response as the schema describes it"
        if returncode == 0
        else f"FAIL (schemathesis exit {returncode})"
    )
    return returncode


def _wait_schema(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", "/api/schema/")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError("/api/schema/ did not answer 200")


def _server_errors(log: Path) -> list[str]:
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return []
    return [line[:300] for line in lines if '"status_code": 5' in line]


if __name__ == "__main__":
    sys.exit(main())
