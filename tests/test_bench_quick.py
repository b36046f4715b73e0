"""``python -m bench --quick`` end to end: real gunicorn, Celery worker, RabbitMQ, PostgreSQL.

Asserts that the harness runs and that its counts add up, never how fast anything is (the
machine is shared). It uses its own database, vhost and Redis database (``BENCH_*_URL``).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PHASES = ("naive", "single", "batch")
PHASE_KEYS = {
    "events",
    "accepted_events",
    "accepted_events_per_s",
    "e2e_events_per_s",
    "post_p50_ms",
    "post_p99_ms",
    "lag_p50_ms",
    "lag_p99_ms",
    "stored",
    "distinct_event_ids",
    "error_count",
    "loadgen_cpu_per_request_us",
    "complete",
}
RATIOS = {"batch_e2e_vs_copy", "single_e2e_vs_naive", "single_p99_vs_naive_p99"}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    output = tmp_path_factory.mktemp("bench") / "latest.json"
    env = {
        **os.environ,
        "BENCH_DATABASE_URL": os.environ.get(
            "BENCH_DATABASE_URL", "postgres://localhost:5432/traceledger_bench_quick"
        ),
        "BENCH_BROKER_URL": os.environ.get(
            "BENCH_BROKER_URL", "amqp://guest:guest@localhost:5672/traceledger_bench_quick"
        ),
        "BENCH_REDIS_URL": os.environ.get("BENCH_REDIS_URL", "redis://localhost:6379/15"),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench", "--quick", "--port", "8179", "--output", str(output)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        proc.terminate()  # the harness stops its gunicorn and worker on SIGTERM
        stdout, stderr = proc.communicate(timeout=30)
        pytest.fail(f"python -m bench --quick took more than 90 s:\n{stderr[-3000:]}")
    assert proc.returncode == 0, stderr[-3000:] + stdout[-2000:]
    return json.loads(output.read_text()), stdout


@pytest.mark.integration
def test_it_stores_every_posted_event_exactly_once_in_each_phase(quick_run):
    results, _ = quick_run
    for phase in PHASES:
        figures = results[phase]
        assert figures.keys() >= PHASE_KEYS, phase
        assert figures["error_count"] == 0, (phase, figures["errors"])
        assert figures["accepted_events"] == figures["events"], phase
        assert figures["stored"] == figures["events"], phase
        assert figures["distinct_event_ids"] == figures["events"], phase
        assert figures["complete"] is True, phase
        assert figures["e2e_events_per_s"] > 0, phase
        usage = figures["cpu"]  # bench/cpu.py: read from /proc over the phase
        assert usage["cpu_s"]["web"] > 0 and usage["cpu_s"]["postgres"] > 0, phase
        assert 0 < usage["machine_utilization"] <= 1.05, phase
        assert usage["machine_busy_s"] >= usage["cpu_s"]["web"], phase


@pytest.mark.integration
def test_it_reports_the_ratios_against_the_same_runs_baselines(quick_run):
    results, stdout = quick_run
    assert results["copy"]["events"] == results["batch"]["events"]
    assert results["copy"]["events_per_s"] > 0
    # The limit builds the full-text index too; the stricter one without it is beside it.
    assert results["copy"]["full_text_index"] is True
    assert results["copy"]["indexes"] > results["copy"]["events_table_only"]["indexes"]
    assert results["copy"]["events_table_only"]["events"] == results["batch"]["events"]
    assert isinstance(results["ratios"]["batch_e2e_vs_copy_events_table_only"], float)
    assert results["ratios"].keys() >= RATIOS
    for name in RATIOS:
        assert isinstance(results["ratios"][name], float), name
    assert set(results["targets"]) >= RATIOS | {"ledger_share_of_worker_time"}
    assert "| TraceLedger, 100 events per POST |" in stdout


@pytest.mark.integration
def test_it_measures_the_ledger_inside_the_worker_and_with_and_without_chaining(quick_run):
    ledger = quick_run[0]["ledger"]
    assert ledger["worker_batch_phase"]["batches"] >= 1
    assert 0 < ledger["share"] < 1
    batch = ledger["worker_batch_phase"]
    assert 0 < batch["lock_ms_per_batch"] < batch["ledger_ms_per_batch"]
    assert 0 < batch["share_without_lock_wait"] < ledger["share"]
    in_process = ledger["in_process"]
    assert in_process["stored_without_chaining"] == in_process["events"] > 0
    assert in_process["with_chaining_events_per_s"] > 0
    assert in_process["without_chaining_events_per_s"] > 0


@pytest.mark.integration
def test_it_leaves_every_benchmarked_chain_verifiable(quick_run):
    verify = quick_run[0]["verify"]
    assert verify["ran"] is True
    assert verify["single"] is True
    assert verify["batch"] is True
