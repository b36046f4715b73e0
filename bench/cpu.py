"""Where a phase's CPU went: the stack's own processes, the services, the whole machine.

Every process of the stack shares the same few cores, so a phase whose machine was busy
all along was bound by CPU: its end-to-end rate is the cores divided by the CPU all the
processes together spend per event, and only spending less raises it. Read from /proc
(Linux); groups whose processes are not found read 0.
"""

import os
import time
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")
# Process names (/proc/<pid>/stat's comm) of the services, by group.
SERVICES = {"postgres": ("postgres",), "rabbitmq": ("beam.smp",), "redis": ("redis-server",)}


def _stat(pid: str) -> tuple[str, list[str]] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None  # gone between the listing and the read
    comm = raw[raw.index("(") + 1 : raw.rindex(")")]
    return comm, raw[raw.rindex(")") + 2 :].split()


def services_cpu_seconds() -> dict[str, float]:
    """CPU seconds so far per service group; a group's exited processes count through their
    parent (PostgreSQL backends through the postmaster, which reaps them)."""
    stats = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := _stat(entry)) is not None:
            stats[entry] = stat
    totals = dict.fromkeys(SERVICES, 0.0)
    for comm, fields in stats.values():
        for group, names in SERVICES.items():
            if comm in names:
                parent = stats.get(fields[1])
                own = int(fields[11]) + int(fields[12])
                # The group's root (its parent is not in the group) also carries its reaped
                # children's time.
                if parent is None or parent[0] not in names:
                    own += int(fields[13]) + int(fields[14])
                totals[group] += own / TICK
    return totals


def machine_busy_seconds() -> float:
    """Busy CPU seconds of the whole machine so far (every core; idle and iowait excluded)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / TICK


class CpuMeter:
    """``start()`` then ``stop(events=…)``: each group's CPU over the interval."""

    def __init__(self, *, web, worker):
        self.web, self.worker = web, worker

    def _read(self) -> dict[str, float]:
        return {
            "web": self.web.cpu_seconds(),
            "worker": self.worker.cpu_seconds(),
            **services_cpu_seconds(),
            "machine_busy": machine_busy_seconds(),
        }

    def start(self) -> None:
        self.before = self._read()
        self.started = time.monotonic()

    def stop(self, *, events: int, loadgen_cpu_s: float) -> dict:
        after = self._read()
        wall = time.monotonic() - self.started
        spent = {k: max(after[k] - self.before[k], 0.0) for k in after}
        spent["loadgen"] = loadgen_cpu_s
        busy = spent.pop("machine_busy")
        known = sum(spent.values())
        capacity = wall * (os.cpu_count() or 1)
        per_k = {k: round(1000 * 1000 * v / max(events, 1), 1) for k, v in spent.items()}
        return {
            "wall_s": round(wall, 2),
            "cpu_s": {k: round(v, 2) for k, v in spent.items()},
            "machine_busy_s": round(busy, 2),
            # busy / (wall x cores): near 1.0 means the phase was bound by CPU.
            "machine_utilization": round(busy / capacity, 3) if capacity else None,
            "cpu_ms_per_1000_events": per_k,
            "machine_busy_ms_per_1000_events": round(1e6 * busy / max(events, 1), 1),
            "other_cpu_s": round(max(busy - known, 0.0), 2),  # kernel, harness, the rest
        }
