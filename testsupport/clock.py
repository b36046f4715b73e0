"""A monotonic clock that tests move by hand (``clock.now += 30``)."""


class FakeMonotonic:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def fake_monotonic(monkeypatch, module) -> FakeMonotonic:
    """Replace ``module.time.monotonic`` with a clock the test sets."""
    clock = FakeMonotonic()
    monkeypatch.setattr(module.time, "monotonic", clock)
    return clock
