"""``traceledger_ingest_retries_total`` has its series before the first retry (README,
"Health and monitoring"): an alert on its rate needs a series to compare with."""

import audit.tasks  # noqa: F401  (makes the series)
from audit.metrics_worker import INGEST_RETRIES


def test_every_retried_error_has_a_series_at_start():
    [family] = INGEST_RETRIES.collect()
    errors = {s.labels["error"] for s in family.samples if s.name.endswith("_total")}
    # The class names, as IngestTask.on_retry labels them (kombu's is an OperationalError too).
    assert {"OperationalError", "InterfaceError", "SoftTimeLimitExceeded"} <= errors
