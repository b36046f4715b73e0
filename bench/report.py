"""The results table and the ratios against the same run's baselines (issue 9 targets)."""

TARGETS = {
    "batch_e2e_vs_copy": 0.5,  # at least
    "single_e2e_vs_naive": 1.5,  # at least
    "single_p99_vs_naive_p99": 1.0,  # at most
    "ledger_share_of_worker_time": 0.15,  # at most
    # Target 3, "queue depth and lag stay bounded": last third of the sustain run against
    # the middle third (bench/sustain.py); 1.0 is flat.
    "sustain_depth_growth": 1.2,  # at most
    "sustain_lag_growth": 1.2,  # at most
}
AT_MOST = frozenset(
    {
        "single_p99_vs_naive_p99",
        "ledger_share_of_worker_time",
        "sustain_depth_growth",
        "sustain_lag_growth",
    }
)


def _ratio(a, b):
    if a is None or b in (None, 0):
        return None
    return round(a / b, 3)


def ratios(results: dict) -> tuple[dict, dict]:
    copy = results.get("copy", {})
    naive = results.get("naive", {})
    single = results.get("single", {})
    batch = results.get("batch", {})
    ledger = results.get("ledger", {})
    sustain = results.get("sustain") or {}
    values = {
        "batch_e2e_vs_copy": _ratio(batch.get("e2e_events_per_s"), copy.get("events_per_s")),
        # The stricter limit: the same COPY without the full-text index (bench/baselines.py).
        "batch_e2e_vs_copy_events_table_only": _ratio(
            batch.get("e2e_events_per_s"), (copy.get("events_table_only") or {}).get("events_per_s")
        ),
        "batch_accepted_vs_copy": _ratio(
            batch.get("accepted_events_per_s"), copy.get("events_per_s")
        ),
        "single_e2e_vs_naive": _ratio(
            single.get("e2e_events_per_s"), naive.get("e2e_events_per_s")
        ),
        "single_accepted_vs_naive": _ratio(
            single.get("accepted_events_per_s"), naive.get("e2e_events_per_s")
        ),
        "single_p99_vs_naive_p99": _ratio(single.get("post_p99_ms"), naive.get("post_p99_ms")),
        "naive_vs_copy": _ratio(naive.get("e2e_events_per_s"), copy.get("events_per_s")),
        "ledger_share_of_worker_time": ledger.get("share"),
        "sustain_depth_growth": sustain.get("depth_growth"),
        "sustain_lag_growth": sustain.get("lag_growth"),
    }
    targets = {}
    for name, limit in TARGETS.items():
        value = values.get(name)
        at_most = name in AT_MOST
        met = None if value is None else (value <= limit if at_most else value >= limit)
        targets[name] = {
            "value": value,
            "target": f"{'<=' if at_most else '>='} {limit}",
            "met": met,
        }
    return values, targets


def complete(results: dict) -> bool:
    """Every phase stored exactly what it posted (speed is reported, never enforced here)."""
    return all(results.get(p, {}).get("complete") for p in ("naive", "single", "batch"))


def _fmt(value, digits=0):
    if value is None:
        return "—"
    if isinstance(value, float) and digits:
        return f"{value:,.{digits}f}"
    return f"{round(value):,}"


CPU_GROUPS = (
    ("web", "web"),
    ("worker", "worker"),
    ("postgres", "PostgreSQL"),
    ("rabbitmq", "RabbitMQ"),
    ("redis", "Redis"),
    ("loadgen", "load gen."),
)


def _copy_rows(results: dict) -> list[tuple[dict, str]]:
    copy = results.get("copy", {})
    rows = [(copy, "PostgreSQL COPY, same rows, indexes and full-text index (limit)")]
    if copy.get("events_table_only"):
        rows.append((copy["events_table_only"], "PostgreSQL COPY without the full-text index"))
    return rows


def cpu_table(results: dict) -> list[str]:
    """CPU ms per 1,000 events by process group, and how busy the machine was (bench/cpu)."""
    header = " | ".join(name for _, name in CPU_GROUPS)
    lines = [
        "",
        f"| CPU ms per 1,000 events | {header} | whole machine | machine busy |",
        "| --- |" + " ---: |" * (len(CPU_GROUPS) + 2),
    ]
    blanks = " | ".join("—" for _ in CPU_GROUPS)
    for copy, name in _copy_rows(results):
        if copy.get("machine_busy_ms_per_1000_events") is not None:
            lines.append(
                f"| {name} | {blanks} | {_fmt(copy['machine_busy_ms_per_1000_events'])} | — |"
            )
    for key, name in (
        ("naive", "naive endpoint"),
        ("single", "1 per POST"),
        ("batch", "100 per POST"),
    ):
        usage = results.get(key, {}).get("cpu")
        if not usage:
            continue
        per_k = usage["cpu_ms_per_1000_events"]
        cells = " | ".join(_fmt(per_k.get(group)) for group, _ in CPU_GROUPS)
        lines.append(
            f"| {name} | {cells} | {_fmt(usage['machine_busy_ms_per_1000_events'])} "
            f"| {round(100 * usage['machine_utilization'])} % |"
        )
    return lines if len(lines) > 3 else []


def table(results: dict) -> str:
    run = results["run"]
    plan = run["plan"]
    lines = [
        "",
        f"TraceLedger ingest benchmark ({'quick' if run['quick'] else 'full'} run {run['id']}, "
        f"commit {run['git_commit']}, {run['machine']['cpus']} CPUs shared by every process, "
        f"{plan['clients']} clients, {run['web']}, {run['worker']})",
        "",
        "| path | events | accepted ev/s | end-to-end ev/s | POST p50 ms | POST p99 ms "
        "| lag p50 ms | lag p99 ms |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for copy, name in _copy_rows(results):
        lines.append(
            f"| {name} | {_fmt(copy.get('events'))} | — "
            f"| {_fmt(copy.get('events_per_s'))} | — | — | — | — |"
        )
    rows = (
        ("naive", "naive endpoint: DRF + ORM insert per request"),
        ("single", "TraceLedger, 1 event per POST"),
        ("batch", f"TraceLedger, {plan['batch_size']} events per POST"),
    )
    for key, name in rows:
        r = results.get(key, {})
        lines.append(
            f"| {name} | {_fmt(r.get('events'))} | {_fmt(r.get('accepted_events_per_s'))} "
            f"| {_fmt(r.get('e2e_events_per_s'))} | {_fmt(r.get('post_p50_ms'), 1)} "
            f"| {_fmt(r.get('post_p99_ms'), 1)} | {_fmt(r.get('lag_p50_ms'), 1)} "
            f"| {_fmt(r.get('lag_p99_ms'), 1)} |"
        )
    lines += cpu_table(results)
    lines += ["", "| ratio | value | target | met |", "| --- | ---: | --- | --- |"]
    for name, t in results.get("targets", {}).items():
        met = {True: "yes", False: "**no**", None: "not measured"}[t["met"]]
        value = "—" if t["value"] is None else f"{t['value']:.2f}"
        lines.append(f"| {name} | {value} | {t['target']} | {met} |")
    stricter = results.get("ratios", {}).get("batch_e2e_vs_copy_events_table_only")
    if stricter is not None:
        lines.append(f"| batch_e2e_vs_copy_events_table_only | {stricter:.2f} | (reported) | — |")
    ledger = results.get("ledger", {})
    in_process = ledger.get("in_process") or {}
    batch_phase = ledger.get("worker_batch_phase") or {}
    if batch_phase:
        lines.append(
            f"\nledger inside the worker (batch phase): {batch_phase['ledger_ms_per_batch']} ms "
            f"of {batch_phase['ms_per_batch']} ms per batch = share {batch_phase['share']}; "
            f"of which {batch_phase.get('lock_ms_per_batch')} ms taking the chain-head lock "
            f"(share without it: {batch_phase.get('share_without_lock_wait')})"
        )
    if in_process:
        lines.append(
            f"worker service in-process: {_fmt(in_process['with_chaining_events_per_s'])} ev/s "
            f"with chaining, {_fmt(in_process['without_chaining_events_per_s'])} ev/s without "
            f"({in_process['chaining_cost_us_per_event']} µs/event; ledger share "
            f"{in_process['ledger_share_in_process']}: chain_head_lock "
            f"{in_process['chain_head_lock_ms_per_batch']} ms + chain_rows "
            f"{in_process['chain_rows_ms_per_batch']} ms per batch; hashing alone "
            f"{in_process['hashing_cpu_us_per_event']} µs CPU/event)"
        )
    sustain = results.get("sustain")
    if sustain:
        lines.append(
            f"\nsustain {sustain['seconds']}s: {_fmt(sustain['accepted_events_per_s'])} ev/s "
            f"accepted ({_fmt(sustain.get('refused_429'))} requests answered 429 at the "
            f"backlog limit of {sustain.get('max_backlog_setting')} messages), queue depth max "
            f"by third {sustain.get('queue_depth_max_by_third')}, lag p99 ms by third "
            f"{sustain.get('lag_p99_ms_by_third')}, drained {sustain['drained_after_s']} s "
            f"after the load stopped; backlog purged: {sustain['purged_batches']} batches"
        )
    for key in ("naive", "single", "batch"):
        r = results.get(key, {})
        if r.get("error_count"):
            lines.append(f"\n{key}: {r['error_count']} failed requests, e.g. {r['errors'][:2]}")
        if r and not r.get("complete"):
            lines.append(
                f"\n{key}: INCOMPLETE — stored {r.get('stored')} of {r.get('events')} "
                f"(distinct {r.get('distinct_event_ids')})"
            )
    return "\n".join(lines) + "\n"
