"""``make soak``: post 100,000 events while the broker, Redis and a worker fail, lose nothing.

The web and worker processes reach RabbitMQ and Redis only through loopback fault proxies
(``testsupport/faultproxy.py``) that this process controls. While the load runs, a chaos
thread cuts the broker or Redis (refuse / reset / blackhole) for a few seconds, or SIGKILLs
the worker and starts a new one. Then, with every fault healed, it waits (bounded) for the
pipeline to drain and checks:

* every event answered 202 is stored, once (count in == count stored, no duplicate ids);
* nothing is stored that was never posted;
* every tenant's chain verifies (``manage.py verify_ledger``);
* the dead-letter queue and the ``DeadLetter`` table are empty, the outbox is drained.

Exit status 0 only when all of that holds. Duplicates are part of the load: about 3 % of the
events are posted a second time in a later request, and every request that fails (503, a
cut connection) is retried with the same event ids.
"""

import argparse
import io
import json
import random
import signal
import sys
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import orjson

from bench.environment import ROOT, Services, prepare, process_env, queues_purge
from bench.events import event_dicts
from bench.loadgen import LoadGenerator
from bench.processes import Beat, Web, Worker

INGEST_PATH = "/api/v1/audit-events"
FAULTS = ("broker", "redis", "worker")
# HTTP statuses of every attempt ("0" = connection failed or timed out), for the report.
STATUSES: dict[str, int] = {}


def say(text: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--events", type=int, default=100_000, help="distinct events (100,000)")
    parser.add_argument("--singles", type=int, default=1000, help="of which posted one per request")
    parser.add_argument("--duplicates", type=float, default=0.03, help="share posted twice")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=int, default=900, help="time bound of the whole run")
    parser.add_argument("--drain-seconds", type=int, default=300, help="bound of the final drain")
    parser.add_argument(
        "--fault-every", type=float, default=6.0, help="mean seconds between faults"
    )
    parser.add_argument(
        "--fault-seconds", type=float, default=120, help="faults last at least this long"
    )
    parser.add_argument(
        "--load-seconds",
        type=float,
        default=120,
        help="post the events over at least this long, so that faults of every kind meet "
        "the posting on a fast machine too (0: as fast as the API takes them)",
    )
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--port", type=int, default=8172)
    parser.add_argument(
        "--database-url",
        default="postgres://localhost:5432/traceledger_soak",
        help="dropped and recreated: its name must contain 'soak' or 'bench'",
    )
    parser.add_argument(
        "--broker-url", default="amqp://guest:guest@localhost:5672/traceledger_soak"
    )
    parser.add_argument("--redis-url", default="redis://localhost:6379/14")
    parser.add_argument("--output", type=Path, default=ROOT_RESULTS / "soak.json")
    return parser.parse_args(argv)


ROOT_RESULTS = Path(ROOT) / "bench" / "results"


def _via(url: str, port: int) -> str:
    """``url`` with its host and port replaced by the local proxy's."""
    parts = urlsplit(url)
    auth = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    return urlunsplit(parts._replace(netloc=f"{auth}127.0.0.1:{port}"))


def build_requests(*, run_id: str, events: int, singles: int, duplicates: float, seed: int):
    """Request bodies: ``singles`` single-event POSTs, the rest in batches of 2-200, and a
    share of events posted again later (never twice in one request: the API refuses that).
    Returns (bodies, {tenant slug: set of event ids}) — bodies carry their tenant."""
    rng = random.Random(seed)
    evs = event_dicts(run_id=run_id, phase="soak", count=events, seed=seed)
    for i, event in enumerate(evs):
        event["_tenant"] = "soak-a" if i % 3 else "soak-b"
    posted: dict[str, set[str]] = {"soak-a": set(), "soak-b": set()}
    requests: list[tuple[str, list[dict]]] = []
    queue = list(evs)
    rng.shuffle(queue)
    by_tenant: dict[str, list[dict]] = {"soak-a": [], "soak-b": []}
    for event in queue:
        by_tenant[event["_tenant"]].append(event)
    singles_left = singles
    for tenant, pending in by_tenant.items():
        i = 0
        while i < len(pending):
            if singles_left > 0 and rng.random() < 0.5:
                size = 1
                singles_left -= 1
            else:
                size = rng.randint(2, 200)
            chunk = pending[i : i + size]
            i += size
            requests.append((tenant, chunk))
            posted[tenant].update(e["event_id"] for e in chunk)
    firsts = len(requests)
    dupes = rng.sample(evs, int(len(evs) * duplicates))
    for k in range(0, len(dupes), 50):
        chunk = dupes[k : k + 50]
        for tenant in ("soak-a", "soak-b"):
            same = [e for e in chunk if e["_tenant"] == tenant]
            if same:
                requests.append((tenant, same))
    # Duplicates go after their first copies: shuffle the first copies, keep the rest last.
    head, tail = requests[:firsts], requests[firsts:]
    rng.shuffle(head)
    requests = head + tail
    bodies = []
    for tenant, chunk in requests:
        clean = [{k: v for k, v in e.items() if k != "_tenant"} for e in chunk]
        bodies.append((tenant, orjson.dumps(clean[0] if len(clean) == 1 else clean), len(clean)))
    return bodies, posted


class Chaos(threading.Thread):
    """Injects one fault at a time at random moments, cycling through every kind."""

    def __init__(self, *, proxies: dict, restart_worker, kill_worker, mean_gap: float, seed: int):
        super().__init__(daemon=True)
        self.proxies, self.restart_worker, self.kill_worker = proxies, restart_worker, kill_worker
        self.mean_gap = mean_gap
        self.rng = random.Random(seed)
        self.log: list[dict] = []
        self.posting = threading.Event()  # set by main while the load runs
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()
        self.join()

    def run(self) -> None:
        kinds: list[str] = []
        gap = self.rng.uniform(1.0, 2.0)  # the first fault early, while the load runs
        while not self._halt.wait(gap):
            gap = self.rng.uniform(0.5, 1.5) * self.mean_gap
            if not kinds:
                kinds = list(FAULTS)
                self.rng.shuffle(kinds)
            kind = kinds.pop()
            started = time.perf_counter()
            if kind == "worker":
                self.kill_worker()
                self._halt.wait(self.rng.uniform(0.5, 3.0))
                self.restart_worker()
                detail = "SIGKILL, restarted"
            else:
                mode = self.rng.choice(("refuse", "reset", "blackhole"))
                self.proxies[kind].set_mode(mode)
                self._halt.wait(self.rng.uniform(1.0, 6.0))
                self.proxies[kind].set_mode("pass")
                detail = mode
            entry = {
                "fault": kind,
                "detail": detail,
                "seconds": round(time.perf_counter() - started, 1),
                "while_posting": self.posting.is_set(),
            }
            self.log.append(entry)
            say(f"fault: {kind} {detail} for {entry['seconds']} s")


def main(argv=None) -> int:
    args = parse_args(argv)
    # SIGTERM must still stop the processes and proxies it started (the finally below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    seed = args.seed if args.seed is not None else random.randrange(1_000_000)
    run_id = uuid.uuid4().hex[:10]
    deadline = time.monotonic() + args.seconds
    services = Services(args.database_url, args.broker_url, args.redis_url)
    logs = Path(ROOT) / "var" / "soak" / run_id
    say(
        f"run {run_id}, seed {seed}: {args.events} events, "
        f"faults every ~{args.fault_every} s; logs in {logs}"
    )
    prepare(services=services)

    from accounts.services import api_key_create, tenant_get_or_create
    from testsupport.faultproxy import FaultProxy

    keys = {}
    tenants = {}
    for slug in ("soak-a", "soak-b"):
        tenant, _ = tenant_get_or_create(slug=slug)
        _, keys[slug] = api_key_create(tenant=tenant, name=slug, scopes=["ingest", "read"])
        tenants[slug] = tenant.pk

    broker = urlsplit(services.broker_url)
    redis = urlsplit(services.redis_url)
    proxies = {
        "broker": FaultProxy(broker.hostname or "localhost", broker.port or 5672).start(),
        "redis": FaultProxy(redis.hostname or "localhost", redis.port or 6379).start(),
    }
    proxied = Services(
        services.database_url,
        _via(services.broker_url, proxies["broker"].port),
        _via(services.redis_url, proxies["redis"].port),
    )
    env = process_env(
        services=proxied,
        metrics_dir=logs / "metrics",
        # Fail over to the outbox quickly and keep retrying a dead broker for the whole run.
        TRACELEDGER_PUBLISH_TIMEOUT="1.0",
    )
    web = Web(port=args.port, env=env, log_path=logs / "web.log")
    workers: list[Worker] = []
    lock = threading.Lock()

    def start_worker() -> None:
        with lock:
            worker = Worker(env=env, log_path=logs / f"worker-{len(workers)}.log", node="soak")
            worker.start()
            workers.append(worker)

    def kill_worker() -> None:
        with lock:
            if workers and workers[-1].alive:
                workers[-1].kill()

    beat = Beat(env=env, log_path=logs / "beat.log", schedule=logs / "beat-schedule")
    report: dict = {"run_id": run_id, "seed": seed, "events": args.events}
    ok = False
    chaos = None
    try:
        web.start()
        start_worker()
        beat.start()
        web.wait_ready()
        workers[-1].wait_ready()
        bodies, posted = build_requests(
            run_id=run_id,
            events=args.events,
            singles=args.singles,
            duplicates=args.duplicates,
            seed=seed,
        )
        say(f"{len(bodies)} requests ready; load and faults start")
        chaos = Chaos(
            proxies=proxies,
            restart_worker=start_worker,
            kill_worker=kill_worker,
            mean_gap=args.fault_every,
            seed=seed,
        )
        chaos.posting.set()
        chaos.start()
        chaos_started = time.monotonic()
        accepted, failed = _post_all(args, keys, bodies, deadline)
        chaos.posting.clear()
        # Keep failing for at least --fault-seconds: the drain must survive faults as well.
        remaining = args.fault_seconds - (time.monotonic() - chaos_started)
        if remaining > 0:
            say(f"load done; faults go on for another {remaining:.0f} s")
            time.sleep(min(remaining, max(0.0, deadline - time.monotonic())))
        chaos.stop()
        for proxy in proxies.values():
            proxy.set_mode("pass")
        if not workers[-1].alive:
            start_worker()
        say(
            f"load done: {sum(len(v) for v in accepted.values())} distinct events accepted, "
            f"{len(failed)} requests failed for good; faults: {len(chaos.log)}; draining"
        )
        report["faults"] = chaos.log
        report["faults_while_posting"] = {
            kind: sum(1 for f in chaos.log if f["fault"] == kind and f["while_posting"])
            for kind in FAULTS
        }
        if not all(report["faults_while_posting"].values()):
            say(
                "note: not every kind of fault met the posting "
                f"{report['faults_while_posting']}; raise --load-seconds"
            )
        report["failed_requests"] = failed[:20]
        report["http_statuses_of_attempts"] = dict(STATUSES)
        report.update(_drain_and_check(services, tenants, accepted, posted, args, deadline))
        report["accepted_by_path"] = _accepted_by_path(logs / "metrics")
        ok = report["ok"]
    finally:
        if chaos is not None and chaos.is_alive():
            chaos.stop()
        beat.stop()
        for worker in workers:
            worker.stop()
        web.stop()
        for proxy in proxies.values():
            proxy.stop()
        queues_purge(services=services)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, default=str) + "\n")
    say(f"accepted by path: {report.get('accepted_by_path')}")
    say(("PASS" if ok else "FAIL") + f": {json.dumps(report.get('checks', {}))}")
    return 0 if ok else 1


def _post_all(args, keys, bodies, deadline):
    """Posts every body with its tenant's key (the tenants concurrently), retrying failures.
    Returns the event ids answered 202 per tenant and the requests that failed for good."""
    accepted: dict[str, set[str]] = {slug: set() for slug in keys}
    failed: list[str] = []
    results = {}

    def post(slug: str, key: str) -> None:
        mine = [(body, n) for tenant, body, n in bodies if tenant == slug]
        generator = LoadGenerator(
            host="127.0.0.1",
            port=args.port,
            path=INGEST_PATH,
            headers={"Authorization": f"Api-Key {key}"},
            clients=max(1, args.clients // len(keys)),
            max_attempts=30,
            timeout=30,
        )
        generator.record_bodies = True
        say(f"posting {sum(n for _, n in mine)} events of {slug} in {len(mine)} requests")
        results[slug] = generator.run(mine, spread=args.load_seconds or None)

    threads = [threading.Thread(target=post, args=item) for item in keys.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=max(1.0, deadline - time.monotonic()))
    for slug, result in results.items():
        for body in result.accepted_bodies:
            doc = orjson.loads(body)
            for event in doc if isinstance(doc, list) else [doc]:
                accepted[slug].add(event["event_id"])
        failed += result.errors
        for status, n in result.statuses.items():
            STATUSES[str(status)] = STATUSES.get(str(status), 0) + n
    if any(thread.is_alive() for thread in threads):
        failed.append("time bound reached while posting")
    return accepted, failed


def _accepted_by_path(metrics_dir: Path) -> dict[str, float]:
    """Events the web answered 202 for, by where they were made durable (broker/outbox)."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(metrics_dir))
    out: dict[str, float] = {}
    for metric in registry.collect():
        for sample in metric.samples:
            if sample.name == "traceledger_events_accepted_total":
                path = sample.labels.get("path", "?")
                out[path] = out.get(path, 0) + sample.value
    return out


def _drain_and_check(services, tenants, accepted, posted, args, deadline) -> dict:
    import psycopg
    from django.core.management import call_command

    from bench.environment import QueueDepth

    expected = {slug: len(ids) for slug, ids in accepted.items()}
    drain_deadline = min(time.monotonic() + args.drain_seconds, deadline + args.drain_seconds)
    with psycopg.connect(**services.conninfo(), autocommit=True) as conn:
        while True:
            counts = {
                slug: conn.execute(
                    "SELECT count(*) FROM audit_auditevent "
                    "WHERE tenant_id = %s AND event_id LIKE %s",
                    (tenant_id, "%-soak-%"),
                ).fetchone()[0]
                for slug, tenant_id in tenants.items()
            }
            outbox = conn.execute("SELECT count(*) FROM audit_outboxmessage").fetchone()[0]
            if all(counts[s] >= expected[s] for s in counts) and outbox == 0:
                break
            if time.monotonic() > drain_deadline:
                say("drain time bound reached")
                break
            say(f"draining: stored {counts} of {expected}, outbox {outbox}")
            time.sleep(5)
        time.sleep(2)  # let a late duplicate batch land before counting duplicates
        checks: dict = {}
        for slug, tenant_id in tenants.items():
            rows = conn.execute(
                "SELECT event_id FROM audit_auditevent WHERE tenant_id = %s AND event_id LIKE %s",
                (tenant_id, "%-soak-%"),
            ).fetchall()
            stored = [r[0] for r in rows]
            stored_set = set(stored)
            checks[slug] = {
                "accepted": len(accepted[slug]),
                "stored": len(stored),
                "missing": len(accepted[slug] - stored_set),
                "duplicates": len(stored) - len(stored_set),
                "never_posted": len(stored_set - posted[slug]),
            }
        outbox = conn.execute("SELECT count(*) FROM audit_outboxmessage").fetchone()[0]
        dead_rows = conn.execute("SELECT count(*) FROM audit_deadletter").fetchone()[0]
    dlq = QueueDepth(services.broker_url, "audit.ingest.dlq")
    dlq_depth = dlq.read()
    dlq.close()
    verify_out = io.StringIO()
    try:
        call_command("verify_ledger", stdout=verify_out, stderr=verify_out)
        chains_ok = True
    except SystemExit as exc:
        chains_ok = exc.code in (0, None)
    except Exception as exc:
        verify_out.write(repr(exc))
        chains_ok = False
    checks["outbox_left"] = outbox
    checks["dead_letter_rows"] = dead_rows
    checks["dlq_depth"] = dlq_depth
    checks["chains_verify"] = chains_ok
    ok = (
        all(
            c["missing"] == 0 and c["duplicates"] == 0 and c["never_posted"] == 0
            for s, c in checks.items()
            if s in tenants
        )
        and outbox == 0
        and dead_rows == 0
        and dlq_depth == 0
        and chains_ok
    )
    return {"ok": ok, "checks": checks, "verify_ledger": verify_out.getvalue()[-2000:]}


if __name__ == "__main__":
    sys.exit(main())
