"""Fixtures of the audit app's tests."""

import pytest

from audit.publisher import publisher_reset
from audit.tests.ingest_api_support import purge_ingest_queue
from audit.tests.ingest_support import purge_queues


@pytest.fixture
def clean_broker():
    """A fresh publisher (breaker closed) and an empty ``audit.ingest``, before and after:
    for tests that publish and then read the queue (no worker consumes it)."""
    publisher_reset()
    purge_ingest_queue()
    yield
    publisher_reset()
    purge_ingest_queue()


@pytest.fixture
def submitted_events(monkeypatch):
    """The events a command or service submits (its own records: a purge, a key rotation),
    kept here instead of published or written to the outbox in the change's transaction."""
    from audit.services import outbox, submission

    submitted = []
    monkeypatch.setattr(
        submission,
        "events_submit",
        lambda *, tenant_id, events, request_id, submitted_by="": (
            submitted.extend(events) or "broker"
        ),
    )
    monkeypatch.setattr(
        outbox,
        "outbox_message_in_transaction",
        lambda *, payload: submitted.extend(payload["events"]),
    )
    return submitted


@pytest.fixture
def empty_queues():
    """``audit.ingest`` and its dead-letter queue empty before and after the test."""
    purge_queues()
    yield
    purge_queues()


@pytest.fixture
def ledger_public_key_file(tmp_path):
    """The signing key's public half in a PEM file, as an auditor saves it for the tool."""
    from audit.ledger.signing import public_key_pem

    path = tmp_path / "ledger.pub"
    path.write_text(public_key_pem())
    return path
