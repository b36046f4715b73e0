"""Retention purges and the search index: a purge removes its events' PostgreSQL entries and
Elasticsearch documents once it commits; a search backend that fails never fails the purge,
and the purge sweep catches up."""

from contextlib import contextmanager
from datetime import UTC, datetime
from io import StringIO
from unittest import mock

import pytest
from django.core.management import call_command
from django.db import OperationalError, connection

from audit.models import AuditEvent, Checkpoint
from audit.models.ledger import CheckpointKind
from audit.tests.ledger_factories import chained_events_create
from search.backends.postgresql import PostgresBackend
from search.documents import INDEX_ALIAS
from search.models import Backend, EventSearchEntry, PurgeCleanup
from search.tasks_purge import purge_sweep

# Real commits: the search app acts on the purge's on_commit, as in production.
pytestmark = pytest.mark.django_db(transaction=True)

ORPHANS_SQL = """
    SELECT count(*) FROM search_eventsearchentry s
    LEFT JOIN audit_auditevent e ON e.id = s.event_id WHERE e.id IS NULL
"""


@pytest.fixture(autouse=True)
def no_trail_record(monkeypatch):
    """The purge's own ``ledger.purge`` record goes to RabbitMQ; not what these tests are about."""
    from audit.services import submission

    monkeypatch.setattr(submission, "events_submit", lambda **kwargs: "broker")


def _received(day: int) -> dict:
    at = datetime(2026, 1, day, 12, tzinfo=UTC)
    return {"occurred_at": at, "received_at": at}


def _indexed(tenant_id: int, count: int, start: int, day: int, **overrides) -> list[AuditEvent]:
    events = chained_events_create(
        tenant_id=tenant_id, count=count, start=start, **_received(day), **overrides
    )
    PostgresBackend().index_events(event_ids=[str(e.id) for e in events])
    return events


def _orphans() -> int:
    with connection.cursor() as cursor:
        cursor.execute(ORPHANS_SQL)
        return cursor.fetchone()[0]


def _matching(word: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM search_eventsearchentry "
            "WHERE vector @@ plainto_tsquery('english', %s)",
            [word],
        )
        return cursor.fetchone()[0]


@contextmanager
def search_not_told():
    """A purge the search app does not hear of, as every purge before ``events_purged``."""
    from audit.signals import events_purged
    from search import receivers

    events_purged.disconnect(dispatch_uid="search.remove_purged")
    try:
        yield
    finally:
        receivers.connect()


def _purge(tenant, before: str = "2026-01-02") -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command(
        "purge_events", "--before", before, "--tenant", tenant.slug, "--yes", stdout=out, stderr=err
    )
    return out.getvalue(), err.getvalue()


@pytest.fixture
def es_client_mock(settings):
    """Elasticsearch configured, its client replaced (only the client: the search code runs)."""
    settings.ELASTICSEARCH_URL = "http://elasticsearch.invalid:9200"
    client = mock.Mock()
    client.delete_by_query.return_value = {
        "deleted": 3,
        "failures": [],
        "version_conflicts": 0,
        "timed_out": False,
    }
    with mock.patch("search.backends.elasticsearch.es_client", return_value=client):
        yield client


def test_a_purge_leaves_no_search_entry_of_the_events_it_removed(tenant, other_tenant):
    _indexed(tenant.id, 3, 0, 1, actor_name="Mallory Purged", description="salary of Mallory")
    kept = _indexed(tenant.id, 2, 3, 5)
    theirs = _indexed(other_tenant.id, 2, 0, 1, actor_name="Mallory Other")

    out, err = _purge(tenant)

    assert "removed 3 events (sequences 1..3)" in out
    assert f"{tenant.slug}: search: removed 3 PostgreSQL search entries of the purged events" in out
    assert err == ""
    assert _orphans() == 0
    # Their words are gone from the index, not merely hidden behind the join to the events.
    assert _matching("purged") == 0
    assert _matching("mallory") == 2  # the other tenant's events, not purged
    assert {str(i) for i in EventSearchEntry.objects.values_list("event_id", flat=True)} == {
        str(e.id) for e in [*kept, *theirs]
    }
    cleanup = PurgeCleanup.objects.get(tenant=tenant, backend=Backend.POSTGRESQL)
    assert (cleanup.purged_through, cleanup.removed_through) == (3, 3)


def test_a_later_purge_also_removes_what_an_earlier_one_left(tenant):
    """Entries left by a purge made before the cleanup existed (the QA finding's 144)."""
    _indexed(tenant.id, 3, 0, 1)
    _indexed(tenant.id, 2, 3, 2)
    _indexed(tenant.id, 1, 5, 5)
    with search_not_told():  # as before this change: the purge's entries stay behind
        _purge(tenant, "2026-01-02")
    assert _orphans() == 3

    out, _ = _purge(tenant, "2026-01-03")

    assert "search: removed 5 PostgreSQL search entries" in out
    assert _orphans() == 0


def test_the_elasticsearch_documents_are_deleted_by_tenant_and_sequence(tenant, es_client_mock):
    _indexed(tenant.id, 3, 0, 1)
    _indexed(tenant.id, 1, 3, 5)

    out, err = _purge(tenant)

    es_client_mock.delete_by_query.assert_called_once_with(
        index=INDEX_ALIAS,
        query={
            "bool": {
                "filter": [
                    {"term": {"tenant": tenant.id}},
                    {"range": {"sequence": {"lte": 3}}},
                ]
            }
        },
        conflicts="proceed",
        refresh=True,
        wait_for_completion=True,
    )
    assert "search: removed 3 Elasticsearch documents of the purged events" in out
    assert err == ""
    assert _orphans() == 0
    # A 1 s probe before the delete: a purge command's breaker starts closed, and a
    # black-holed cluster held it on the 30 s delete.
    calls = [name for name, _, _ in es_client_mock.method_calls]
    assert calls.index("info") < calls.index("delete_by_query")
    assert set(
        PurgeCleanup.objects.filter(tenant=tenant).values_list(
            "backend", "purged_through", "removed_through"
        )
    ) == {(Backend.POSTGRESQL, 3, 3), (Backend.ELASTICSEARCH, 3, 3)}


def test_elasticsearch_down_does_not_fail_the_purge_and_the_sweep_catches_up(
    tenant, es_refused, settings
):
    _indexed(tenant.id, 3, 0, 1)
    _indexed(tenant.id, 1, 3, 5)

    out, err = _purge(tenant)

    # The purge itself is whole: events gone, checkpoint signed, PostgreSQL entries removed.
    assert "removed 3 events (sequences 1..3)" in out
    assert AuditEvent.objects.filter(tenant=tenant).count() == 1
    assert Checkpoint.objects.get(tenant=tenant).kind == CheckpointKind.PURGE
    assert _orphans() == 0
    # What could not be removed, and how it is caught up, is said on stderr.
    assert "Elasticsearch documents of the purged events (sequences up to 3) were NOT" in err
    assert "ConnectionError" in err
    assert "purge sweep (search.purge_sweep, every 60 s" in err
    assert "reindex_search --backend elasticsearch" in err
    es = PurgeCleanup.objects.get(tenant=tenant, backend=Backend.ELASTICSEARCH)
    assert (es.purged_through, es.removed_through) == (3, 0)

    assert purge_sweep() == {}  # still down: still behind
    assert PurgeCleanup.objects.get(pk=es.pk).removed_through == 0

    client = mock.Mock()
    client.delete_by_query.return_value = {"deleted": 3, "failures": [], "timed_out": False}
    with mock.patch("search.backends.elasticsearch.es_client", return_value=client):
        assert purge_sweep() == {"elasticsearch": 1}  # Elasticsearch is back
        assert purge_sweep() == {}  # nothing left behind: no call at all
    client.delete_by_query.assert_called_once()
    assert client.delete_by_query.call_args.kwargs["query"]["bool"]["filter"][1] == {
        "range": {"sequence": {"lte": 3}}
    }
    assert PurgeCleanup.objects.get(pk=es.pk).removed_through == 3


def test_a_partial_delete_by_query_is_left_to_the_sweep(tenant, es_client_mock):
    es_client_mock.delete_by_query.return_value = {
        "deleted": 1,
        "failures": [{"shard": 0, "reason": {"type": "es_rejected_execution_exception"}}],
        "version_conflicts": 0,
        "timed_out": False,
    }
    _indexed(tenant.id, 3, 0, 1)
    _indexed(tenant.id, 1, 3, 5)

    _, err = _purge(tenant)

    assert "were NOT removed (PurgeIncomplete: delete-by-query deleted 1 documents" in err
    es = PurgeCleanup.objects.get(tenant=tenant, backend=Backend.ELASTICSEARCH)
    assert es.removed_through == 0


def test_a_search_index_without_the_alias_has_nothing_to_delete(tenant, es_client_mock):
    from elasticsearch import NotFoundError

    es_client_mock.delete_by_query.side_effect = NotFoundError(
        "index_not_found_exception",
        mock.Mock(status=404),
        {"error": {"type": "index_not_found_exception"}, "status": 404},
    )
    _indexed(tenant.id, 3, 0, 1)
    _indexed(tenant.id, 1, 3, 5)

    out, err = _purge(tenant)

    assert "search: removed 0 Elasticsearch documents" in out
    assert err == ""


def test_the_database_gone_after_the_commit_does_not_fail_the_purge(tenant, monkeypatch):
    """Nothing records the work then: the message names reindex_search."""
    from search import purge

    def refused(**kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(purge, "cleanup_pending", refused)
    _indexed(tenant.id, 3, 0, 1)
    _indexed(tenant.id, 1, 3, 5)

    out, err = _purge(tenant)

    assert "removed 3 events (sequences 1..3)" in out
    assert AuditEvent.objects.filter(tenant=tenant).count() == 1
    assert "search entries and documents (sequences up to 3) were NOT removed" in err
    assert "OperationalError: server closed the connection unexpectedly" in err
    assert "run `manage.py reindex_search`" in err


def test_the_purge_sweep_is_scheduled_on_the_search_queue(settings):
    entry = settings.CELERY_BEAT_SCHEDULE["search-purge-sweep"]
    assert entry["task"] == "search.purge_sweep"
    assert entry["options"]["queue"] == "search.index"
    assert purge_sweep.name == "search.purge_sweep"


def test_the_sweep_leaves_a_backend_that_is_not_configured_alone(tenant, settings):
    settings.ELASTICSEARCH_URL = ""
    PurgeCleanup.objects.create(tenant=tenant, backend=Backend.ELASTICSEARCH, purged_through=5)

    assert purge_sweep() == {}
    assert PurgeCleanup.objects.get(tenant=tenant).removed_through == 0


def test_after_the_upgrade_the_sweep_removes_what_earlier_purges_left(tenant):
    """Migration search/0003 records the purges made before it; the sweep then removes their
    entries without anyone running reindex_search."""
    import importlib

    from django.apps import apps

    migration = importlib.import_module("search.migrations.0003_purge_cleanup")
    _indexed(tenant.id, 3, 0, 1)
    _indexed(tenant.id, 1, 3, 5)
    with search_not_told():
        _purge(tenant)
    assert _orphans() == 3

    migration.pending_from_earlier_purges(apps, None)

    assert set(
        PurgeCleanup.objects.values_list("backend", "purged_through", "removed_through")
    ) == {
        (Backend.POSTGRESQL, 3, 0),
        (Backend.ELASTICSEARCH, 3, 0),
    }
    assert purge_sweep() == {"postgresql": 1}  # Elasticsearch is not configured here
    assert _orphans() == 0
