"""``make bench``: the ingest benchmark, every figure a ratio against baselines of the same run.

Phases, each alone on the machine: (1) COPY of the batch phase's rows into a scratch table
with the same indexes (the limit); (2) the naive synchronous endpoint, one ORM insert per
request; (3) TraceLedger, single-event POSTs; (4) TraceLedger, batch POSTs; (5) optionally a
timed run at the accepted rate to show the worker keeps up; (6) the ledger's share of the
worker's time. Prints a table and writes ``bench/results/latest.json``.
"""

import argparse
import io
import json
import os
import platform
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench import NAIVE_PATH, baselines, events, ledger, report
from bench.cpu import CpuMeter
from bench.environment import ROOT, Services, prepare, process_env, queues_purge
from bench.loadgen import LoadGenerator
from bench.measure import (
    Progress,
    StoreWatcher,
    db_figures,
    latency_figures,
    loadgen_figures,
    searchable_count,
)
from bench.processes import Web, Worker, Workers
from bench.sustain import sustain_growth

INGEST_PATH = "/api/v1/audit-events"
RESULTS = Path(ROOT) / "bench" / "results"


@dataclass(frozen=True)
class Plan:
    naive: int
    single: int
    batch: int
    batch_size: int
    clients: int
    sustain_seconds: int


FULL = Plan(naive=5000, single=5000, batch=50000, batch_size=100, clients=16, sustain_seconds=60)
QUICK = Plan(naive=200, single=300, batch=2000, batch_size=100, clients=16, sustain_seconds=0)


def _workers(args, *, env: dict, logs: Path):
    if args.worker_layout == "shared":
        return Worker(env=env, log_path=logs / "worker.log", concurrency=args.worker_concurrency)
    # One ingest process: a single tenant's batches serialize on its chain head anyway, so a
    # second ingest process mostly waits for the lock; it indexes instead.
    return Workers(
        [
            Worker(env=env, log_path=logs / "worker.log", concurrency=1, queues="audit.ingest"),
            Worker(
                env=env,
                log_path=logs / "worker-index.log",
                concurrency=max(args.worker_concurrency - 1, 1),
                queues="search.index,maintenance",
                node="bench-index",
            ),
        ]
    )


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run (< 1 minute)")
    parser.add_argument("--naive", type=int, help="events for the naive endpoint")
    parser.add_argument("--single", type=int, help="events posted one per request")
    parser.add_argument("--batch", type=int, help="events posted in batches (also COPY's N)")
    parser.add_argument("--batch-size", type=int, help="events per batch request (100)")
    parser.add_argument("--clients", type=int, help="concurrent HTTP clients (16)")
    parser.add_argument("--sustain", type=int, help="seconds of the keep-up run (0 = skip)")
    parser.add_argument("--port", type=int, default=8171, help="port of the bench gunicorn")
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument(
        "--web-threads",
        type=int,
        default=4,
        help="threads per web worker, gthread as gunicorn.conf.py ships (4); 1 = sync workers",
    )
    parser.add_argument("--worker-concurrency", type=int, default=2)
    parser.add_argument(
        "--worker-layout",
        choices=("shared", "split"),
        default="shared",
        help="shared: one worker on every queue (as make run); split: one process on "
        "audit.ingest, the others on search.index and maintenance",
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL", "postgres://localhost:5432/traceledger_bench"),
        help="dropped and recreated: its name must contain 'bench'",
    )
    parser.add_argument(
        "--broker-url",
        default=os.environ.get(
            "BENCH_BROKER_URL", "amqp://guest:guest@localhost:5672/traceledger_bench"
        ),
        help="its vhost is created when missing and its queues purged",
    )
    parser.add_argument(
        "--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://localhost:6379/15")
    )
    parser.add_argument("--output", type=Path, default=RESULTS / "latest.json")
    args = parser.parse_args(argv)
    base = QUICK if args.quick else FULL
    plan = Plan(
        naive=args.naive or base.naive,
        single=args.single or base.single,
        batch=args.batch or base.batch,
        batch_size=args.batch_size or base.batch_size,
        clients=args.clients or base.clients,
        sustain_seconds=base.sustain_seconds if args.sustain is None else args.sustain,
    )
    return args, plan


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def main(argv=None) -> int:
    args, plan = parse_args(argv)
    # SIGTERM (a timeout, Ctrl-C of make) must still stop the web and worker it started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    services = Services(args.database_url, args.broker_url, args.redis_url)
    run_id = uuid.uuid4().hex[:10]
    logs = Path(ROOT) / "var" / "bench" / run_id
    say(f"[bench] run {run_id}: {asdict(plan)}; logs in {logs}")

    say(f"[bench] recreating database {services.database_name}, vhost {services.vhost}")
    purged = prepare(services=services)
    if any(purged.values()):
        say(f"[bench] purged leftover messages: {purged}")
    fixtures = _fixtures()

    proc_env = process_env(services=services, metrics_dir=logs / "metrics")
    web = Web(
        port=args.port,
        env=proc_env,
        log_path=logs / "web.log",
        workers=args.web_workers,
        threads=args.web_threads,
    )
    worker = _workers(args, env=proc_env, logs=logs)
    results: dict = {
        "run": {
            "id": run_id,
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:]),
            "quick": args.quick,
            "plan": asdict(plan),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            "git_commit": _git_commit(),
            "database": services.database_name,
            "vhost": services.vhost,
            "web": (
                f"gunicorn gthread x{args.web_workers} ({args.web_threads} threads)"
                if args.web_threads > 1
                else f"gunicorn sync x{args.web_workers}"
            ),
            "worker": (
                f"celery prefork -c {args.worker_concurrency}"
                if args.worker_layout == "shared"
                else f"celery -Q audit.ingest -c 1 + -Q search.index,maintenance "
                f"-c {max(args.worker_concurrency - 1, 1)}"
            ),
        }
    }
    try:
        web.start()
        worker.start()
        web.wait_ready()
        worker.wait_ready()
        say("[bench] web and worker ready")
        results["copy"] = _phase_copy(services, fixtures, plan, run_id)
        results["naive"] = _phase_http(
            "naive",
            services,
            fixtures["naive"],
            plan.naive,
            1,
            plan,
            run_id,
            args,
            web,
            worker,
            path="/" + NAIVE_PATH,
            synchronous=True,
        )
        metrics_dir = logs / "metrics"
        timers = [ledger.worker_timers(metrics_dir)]
        results["single"] = _phase_http(
            "single",
            services,
            fixtures["single"],
            plan.single,
            1,
            plan,
            run_id,
            args,
            web,
            worker,
        )
        timers.append(ledger.worker_timers(metrics_dir))
        results["batch"] = _phase_http(
            "batch",
            services,
            fixtures["batch"],
            plan.batch,
            plan.batch_size,
            plan,
            run_id,
            args,
            web,
            worker,
        )
        timers.append(ledger.worker_timers(metrics_dir))
        if plan.sustain_seconds:
            results["sustain"] = _phase_sustain(services, fixtures["sustain"], plan, run_id, args)
        results["ledger"] = _phase_ledger(fixtures, plan, run_id, timers)
        results["verify"] = _verify(fixtures)
    finally:
        worker.stop()
        web.stop()
    results["ratios"], results["targets"] = report.ratios(results)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(report.table(results))
    say(f"[bench] wrote {args.output}")
    return 0 if report.complete(results) else 1


def _fixtures() -> dict:
    from accounts.services import api_key_create, tenant_get_or_create

    fixtures = {}
    for name in ("naive", "single", "batch", "sustain", "ledger", "nochain"):
        tenant, _ = tenant_get_or_create(slug=f"bench-{name}")
        _, key = api_key_create(tenant=tenant, name=f"bench-{name}", scopes=["ingest", "read"])
        fixtures[name] = {"tenant_id": tenant.pk, "slug": tenant.slug, "key": key}
    return fixtures


def _phase_copy(services, fixtures, plan, run_id) -> dict:
    say(
        f"[bench] COPY of {plan.batch} rows into a scratch table like audit_auditevent, "
        "without and with their full-text index"
    )
    rows = baselines.copy_rows(
        events=events.event_dicts(run_id=run_id, phase="batch", count=plan.batch),
        tenant_id=fixtures["batch"]["tenant_id"],
    )
    return baselines.copy_baseline(services=services, rows=rows)


def _phase_http(
    label,
    services,
    fixture,
    total,
    batch_size,
    plan,
    run_id,
    args,
    web,
    worker,
    *,
    path=INGEST_PATH,
    synchronous=False,
) -> dict:
    evs = events.event_dicts(run_id=run_id, phase=label, count=total)
    bodies = events.request_bodies(evs, batch_size=batch_size)
    del evs
    generator = LoadGenerator(
        host="127.0.0.1",
        port=args.port,
        path=path,
        headers={"Authorization": f"Api-Key {fixture['key']}"},
        clients=plan.clients,
    )
    # Warm-up outside the clock: imports, connections, the API key cache.
    warm = events.request_bodies(
        events.event_dicts(run_id=run_id, phase=f"warm{label}", count=batch_size * 4),
        batch_size=batch_size,
    )
    warm_events = (
        LoadGenerator(
            host="127.0.0.1",
            port=args.port,
            path=path,
            headers={"Authorization": f"Api-Key {fixture['key']}"},
            clients=2,
            max_attempts=1,
        )
        .run(warm)
        .events_accepted
    )
    base = _settle(services, fixture["tenant_id"])
    watcher_expect = base + total
    say(f"[bench] {label}: {total} events, {len(bodies)} requests, {plan.clients} clients")
    watcher = StoreWatcher(services=services, tenant_id=fixture["tenant_id"], expect=watcher_expect)
    progress = Progress(
        label=label, total=total, generator=generator, watcher=None if synchronous else watcher
    )
    meter = CpuMeter(web=web, worker=worker)
    meter.start()
    watcher.started = time.perf_counter()
    if not synchronous:
        watcher.start()
    progress.start()
    result = generator.run(bodies)
    accepted_at = time.perf_counter()
    accepted = result.events_accepted
    if synchronous:
        stored_at = accepted_at
    else:
        watcher.expect = base + accepted
        watcher.join(timeout=min(600.0, max(60.0, 5 * result.wall)))
        watcher.stop()
        stored_at = watcher.done_at
    progress.stop()
    searchable = _searchable(fixture["tenant_id"], run_id, accepted + warm_events, synchronous)
    usage = meter.stop(events=accepted, loadgen_cpu_s=result.cpu_seconds)
    cpu = {
        "web_cpu_s": usage["cpu_s"]["web"],
        "worker_cpu_s": usage["cpu_s"]["worker"],
        "cpu": usage,
    }
    e2e_end = stored_at
    if stored_at is not None and searchable.get("searchable_at") is not None:
        e2e_end = max(stored_at, searchable["searchable_at"])
    figures = {
        "events": total,
        "batch_size": batch_size,
        "clients": plan.clients,
        "accepted_events": accepted,
        "accepted_seconds": round(result.wall, 3),
        "accepted_events_per_s": round(accepted / result.wall, 1),
        "stored_seconds": None if stored_at is None else round(stored_at - result.started, 3),
        "e2e_seconds": None if e2e_end is None else round(e2e_end - result.started, 3),
        "e2e_events_per_s": None
        if e2e_end is None
        else round(accepted / (e2e_end - result.started), 1),
        **latency_figures(result),
        **loadgen_figures(result),
        **cpu,
    }
    db = db_figures(services=services, tenant_id=fixture["tenant_id"], prefix=f"{run_id}-{label}-")
    figures.update(db)
    figures["searchable"] = searchable.get("count")
    if searchable.get("count") is not None:
        figures["searchable"] -= warm_events
    if not synchronous:
        figures["max_queue_depth"] = max((d for _, d in watcher.depth_samples), default=None)
    figures["complete"] = (
        figures["error_count"] == 0
        and figures["stored"] == total
        and figures["distinct_event_ids"] == total
        and (synchronous or stored_at is not None)
    )
    say(
        f"[bench] {label}: accepted {figures['accepted_events_per_s']} ev/s, "
        f"e2e {figures['e2e_events_per_s']} ev/s, stored {figures['stored']}/{total}"
    )
    return figures


def _settle(services, tenant_id: int, timeout: float = 30.0) -> int:
    """The tenant's stored count once the warm-up has drained (unchanged for 1 s)."""
    import psycopg

    from bench.measure import stored_count

    with psycopg.connect(**services.conninfo(), autocommit=True) as conn:
        last, stable_since = -1, time.perf_counter()
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            now_count = stored_count(conn, tenant_id)
            if now_count != last:
                last, stable_since = now_count, time.perf_counter()
            elif time.perf_counter() - stable_since >= 1.0:
                break
            time.sleep(0.2)
    return last


def _searchable(tenant_id: int, run_id: str, expect: int, synchronous: bool) -> dict:
    """Waits (bounded) until the search backend finds every event of the run."""
    if synchronous:
        return {}
    token = f"benchrun{run_id}"
    deadline = time.perf_counter() + 30
    count = None
    while time.perf_counter() < deadline:
        count = searchable_count(tenant_id=tenant_id, token=token)
        if count is None or count >= expect:
            break
        time.sleep(0.25)
    if count is None:
        return {"count": None}
    return {"count": count, "searchable_at": time.perf_counter() if count >= expect else None}


def _phase_sustain(services, fixture, plan, run_id, args) -> dict:
    """Posts batches for ``sustain_seconds`` as fast as 16 clients can and samples the queue
    depth and the lag: the worker keeps up when neither grows over the run."""
    import psycopg

    say(f"[bench] sustain: {plan.sustain_seconds}s of batches, queue depth and lag sampled")
    generator = LoadGenerator(
        host="127.0.0.1",
        port=args.port,
        path=INGEST_PATH,
        headers={"Authorization": f"Api-Key {fixture['key']}"},
        clients=plan.clients,
    )
    factory = events.body_factory(run_id=run_id, phase="sustain", batch_size=plan.batch_size)
    watcher = StoreWatcher(
        services=services, tenant_id=fixture["tenant_id"], expect=10**12, interval=1.0
    )
    watcher.start()
    progress = Progress(label="sustain", total=0, generator=generator, watcher=watcher)
    progress.start()
    result = generator.run(factory=factory, duration=plan.sustain_seconds)
    watcher.expect = result.events_accepted
    watcher.join(timeout=120)
    watcher.stop()
    progress.stop()
    purged = 0
    if watcher.done_at is None:
        # The worker did not catch up: drop the backlog so later phases run on an idle worker.
        purged = _purge_backlog(services)
        say(f"[bench] sustain: not drained within 120 s; purged {purged} queued batches")
        _settle(services, fixture["tenant_id"], timeout=120)
    with psycopg.connect(**services.conninfo(), autocommit=True) as conn:
        rows = conn.execute(
            """
            SELECT extract(epoch FROM received_at - min(received_at) OVER ()) AS offset_s,
                   extract(epoch FROM stored_at - received_at) AS lag
            FROM audit_auditevent WHERE tenant_id = %s AND event_id LIKE %s
            """,
            (fixture["tenant_id"], f"{run_id}-sustain-%"),
        ).fetchall()
    return {
        "seconds": plan.sustain_seconds,
        "accepted_events": result.events_accepted,
        "accepted_events_per_s": round(result.events_accepted / result.wall, 1),
        "refused_429": result.statuses.get(429, 0),
        "max_backlog_setting": _max_backlog(),
        "drained_after_s": None
        if watcher.done_at is None
        else round(watcher.done_at - result.finished, 2),
        "queue_depth_samples": watcher.depth_samples,
        **sustain_growth(
            rows=[(float(o), float(lag)) for o, lag in rows],
            depth_samples=watcher.depth_samples,
            seconds=plan.sustain_seconds,
        ),
        "stored_events": len(rows),
        "purged_batches": purged,
        "error_count": len(result.errors),
    }


def _max_backlog() -> int:
    """The web's TRACELEDGER_INGEST_MAX_BACKLOG (it inherits this process's environment)."""
    from django.conf import settings

    return settings.TRACELEDGER_INGEST_MAX_BACKLOG


def _phase_ledger(fixtures, plan, run_id, timers) -> dict:
    say("[bench] ledger: share of the worker's batch time; events/s with and without chaining")
    single = ledger.share_between(timers[0], timers[1])
    batch = ledger.share_between(timers[1], timers[2])
    batches = 5 if plan.batch < 10_000 else 50
    comparison = ledger.chaining_comparison(
        events=events.event_dicts(run_id=run_id, phase="ledger", count=batches * plan.batch_size),
        batch_size=plan.batch_size,
        tenant_chain=fixtures["ledger"]["tenant_id"],
        tenant_plain=fixtures["nochain"]["tenant_id"],
    )
    return {
        "share": batch["share"],
        "method": "inside the worker: traceledger_ingest_ledger_seconds (canonical form, "
        "chain-head lock wait, chain_rows) / traceledger_ingest_batch_seconds (whole task), "
        "summed over the batch phase from the worker's Prometheus multiprocess files; the "
        "lock's part from traceledger_ingest_ledger_lock_seconds",
        "worker_batch_phase": batch,
        "worker_single_phase": single,
        "in_process": comparison,
    }


def _purge_backlog(services, attempts: int = 5) -> int | str:
    """Purges ``audit.ingest``; a broker slow to answer after the flood gets a few tries."""
    for attempt in range(1, attempts + 1):
        try:
            return queues_purge(services=services).get("audit.ingest", 0)
        except Exception as exc:  # reported; the run goes on without the purge
            say(f"[bench] purge attempt {attempt} failed: {exc!r}")
            time.sleep(5)
    return "failed"


def _verify(fixtures) -> dict:
    """``manage.py verify_ledger --tenant`` for every TraceLedger tenant (not the naive one)."""
    from django.core.management import call_command

    out = {}
    for name in ("single", "batch", "sustain"):
        try:
            call_command("verify_ledger", tenant=fixtures[name]["slug"], stdout=io.StringIO())
            out[name] = True
        except SystemExit as exc:
            out[name] = exc.code in (0, None)
        except Exception as exc:
            out[name] = f"error: {exc}"
    return {"ran": True, **out}


def _git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    except OSError:
        return ""
