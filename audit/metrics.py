"""Prometheus series of the ingest path (``traceledger_`` prefix, see traceledger/metrics.py)."""

from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily

from traceledger.metrics import SCRAPE_COLLECTORS

EVENTS_ACCEPTED = Counter(
    "traceledger_events_accepted",
    "Events answered with 202, by where they were made durable (broker or outbox).",
    ["path"],
)
PUBLISH_FAILURES = Counter(
    "traceledger_publish_failures",
    "Ingest batches not confirmed by RabbitMQ, by reason: unconfirmed (timeout, nack, "
    "connection error) or skipped (publish breaker open).",
    ["reason"],
)
OUTBOX_WRITES = Counter("traceledger_outbox_writes", "Ingest batches written to the outbox table.")
OUTBOX_RELAYED = Counter(
    "traceledger_outbox_relayed", "Outbox batches republished and confirmed by RabbitMQ."
)
REFUSED_FOR_BACKLOG = Counter(
    "traceledger_ingest_refused_backlog",
    "Ingest requests answered 429 because audit.ingest held more than "
    "TRACELEDGER_INGEST_MAX_BACKLOG messages.",
)
# Every label value from the start, at 0: a series that appears only after its first
# failure cannot be alerted on by rate() and reads as "not exported" to whoever looks.
for _path in ("broker", "outbox"):
    EVENTS_ACCEPTED.labels(path=_path)
for _reason in ("unconfirmed", "skipped"):
    PUBLISH_FAILURES.labels(reason=_reason)

PUBLISH_SECONDS = Histogram(
    "traceledger_publish_seconds",
    "Time from sending a group of messages to RabbitMQ's last confirm.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)


class OutboxDepthCollector:
    """Outbox rows and events waiting for the relay, read at scrape time."""

    def collect(self):
        from django.db import DatabaseError

        from audit.selectors import outbox_backlog

        rows = GaugeMetricFamily(
            "traceledger_outbox_depth", "Ingest batches waiting in the outbox table."
        )
        events = GaugeMetricFamily(
            "traceledger_outbox_events", "Events waiting in the outbox table."
        )
        try:
            totals = outbox_backlog()
        except DatabaseError:
            return  # a scrape must not fail because PostgreSQL is down
        rows.add_metric([], totals["messages"])
        events.add_metric([], totals["events"])
        yield rows
        yield events

    def describe(self):
        return []


class IngestQueueCollector:
    """``audit.ingest``'s waiting messages and consumers, read at scrape time: the signal
    of a stopped or stuck worker (consumers 0, or messages growing), which the stored-event
    counters and the lag only show by going quiet."""

    def collect(self):
        from django.conf import settings
        from kombu.exceptions import OperationalError

        from audit.topology import queue_state

        try:
            state = queue_state(
                settings.CELERY_BROKER_URL, timeout=settings.TRACELEDGER_HEALTH_TIMEOUT
            )
        except OperationalError:
            return  # a scrape must not fail because RabbitMQ is down
        messages = GaugeMetricFamily(
            "traceledger_ingest_queue_messages",
            "Messages (ingest requests) waiting in audit.ingest, not yet taken by a worker.",
        )
        consumers = GaugeMetricFamily(
            "traceledger_ingest_queue_consumers",
            "Consumers of audit.ingest: one per worker (a Celery node, whatever its pool "
            "size) taking ingest tasks; 0 means nothing stores events.",
        )
        messages.add_metric([], state.messages)
        consumers.add_metric([], state.consumers)
        yield messages
        yield consumers

    def describe(self):
        return []


for _collector in (OutboxDepthCollector, IngestQueueCollector):
    if not any(isinstance(c, _collector) for c in SCRAPE_COLLECTORS):
        SCRAPE_COLLECTORS.append(_collector())
