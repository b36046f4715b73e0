"""Whether the worker keeps up (issue 9 target 3): growth of the queue and of the lag over a
timed run at the accepted rate.

The run is cut in thirds by time. The first third holds the ramp (an empty queue filling
up), so "bounded" compares the last third with the middle one: a backlog the workers keep
up with (or that admission control caps) is as deep and as late at the end as in the
middle; one they do not keep up with keeps growing. Only samples taken while the load ran
count: the drain afterwards would make any run look bounded.
"""

from bench.loadgen import percentile


def sustain_growth(
    *, rows: list[tuple[float, float]], depth_samples: list[tuple[float, int]], seconds: float
) -> dict:
    """``rows``: (seconds since the first event was received, lag in seconds) per stored
    event; ``depth_samples``: (seconds since the start, messages in audit.ingest)."""
    third = seconds / 3
    lags: dict[int, list[float]] = {0: [], 1: [], 2: []}
    for offset, lag in rows:
        lags[min(int(offset // third), 2)].append(lag)
    depths: dict[int, list[int]] = {0: [], 1: [], 2: []}
    for at, depth in depth_samples:
        if at <= seconds:
            depths[min(int(at // third), 2)].append(depth)
    lag_p99 = {k: percentile(v, 99) for k, v in lags.items()}
    depth_max = {k: max(v, default=None) for k, v in depths.items()}
    by_window: dict[int, list[float]] = {}
    for offset, lag in rows:
        by_window.setdefault(int(offset // 10), []).append(lag)
    return {
        "queue_depth_max_by_third": [depth_max[k] for k in range(3)],
        "lag_p99_ms_by_third": [
            None if lag_p99[k] is None else round(1000 * lag_p99[k], 1) for k in range(3)
        ],
        "lag_p99_ms_by_10s_window": {
            f"{w * 10}-{w * 10 + 10}s": round(1000 * percentile(v, 99), 1)
            for w, v in sorted(by_window.items())
        },
        # Last third against the middle one; 1.0 is flat.
        "depth_growth": _growth(depth_max[2], depth_max[1], floor=DEPTH_FLOOR),
        "lag_growth": _growth(lag_p99[2], lag_p99[1], floor=LAG_FLOOR_S),
    }


# Added to both sides of a growth ratio, so a queue that stays near empty (3 messages
# against 1, 40 ms against 20) counts as flat, as it is.
DEPTH_FLOOR = 10
LAG_FLOOR_S = 0.5


def _growth(last, middle, *, floor: float) -> float | None:
    if last is None or middle is None:
        return None
    return round((last + floor) / (middle + floor), 3)
