"""Audit events shaped like real ones (~530 bytes of JSON each), unique per run and phase."""

import random
import uuid
from datetime import UTC, datetime, timedelta

import orjson

ACTIONS = ("invoice.update", "invoice.create", "user.login", "user.logout", "role.grant")


def event_dicts(*, run_id: str, phase: str, count: int, seed: int = 7) -> list[dict]:
    """``count`` distinct events; each description carries ``run_id`` so search can find it."""
    rng = random.Random(f"{seed}-{phase}")
    now = datetime.now(UTC)
    events = []
    for i in range(count):
        events.append(
            {
                "event_id": f"{run_id}-{phase}-{i}",
                "occurred_at": (now - timedelta(seconds=rng.randint(0, 3600))).isoformat(),
                "action": ACTIONS[i % len(ACTIONS)],
                "outcome": "success" if i % 10 else "failure",
                "severity": "info",
                "actor": {"id": f"user-{rng.randint(1, 5000)}", "type": "user", "name": "Ann Lee"},
                "target": {"id": f"inv-{rng.randint(1, 100000)}", "type": "invoice"},
                "source_ip": f"10.{rng.randint(0, 255)}.{rng.randint(1, 254)}.{i % 250 + 1}",
                "user_agent": "bench/1.0 (python http.client)",
                "description": f"benchrun{run_id} updated the invoice total after review",
                "metadata": {
                    "request_id": str(uuid.UUID(int=rng.getrandbits(128))),
                    "changes": {"total": [rng.randint(1, 999), rng.randint(1, 999)]},
                    "currency": "EUR",
                    "region": "eu-west-1",
                    "tags": ["billing", "manual", "bench"],
                    "note": "x" * 120,
                },
            }
        )
    return events


def request_bodies(events: list[dict], *, batch_size: int) -> list[tuple[bytes, int]]:
    """(JSON body, events in it): a bare object when ``batch_size`` is 1, else lists."""
    if batch_size == 1:
        return [(orjson.dumps(event), 1) for event in events]
    return [
        (orjson.dumps(events[i : i + batch_size]), len(events[i : i + batch_size]))
        for i in range(0, len(events), batch_size)
    ]


def body_factory(*, run_id: str, phase: str, batch_size: int):
    """``factory(i)`` → the i-th body of an endless stream of unique events (for timed runs).

    One body is serialised up front with a placeholder in every event id; each call only
    substitutes the request number, so the generator's cost per request stays tiny.
    """
    template_events = event_dicts(run_id=run_id, phase=phase, count=batch_size)
    for k, event in enumerate(template_events):
        event["event_id"] = f"{run_id}-{phase}-@@I@@-{k}"
    template = orjson.dumps(template_events[0] if batch_size == 1 else template_events)

    def factory(i: int) -> tuple[bytes, int]:
        return template.replace(b"@@I@@", str(i).encode()), batch_size

    return factory
