"""manage.py reindex_search: PostgreSQL rebuild, --since, resume, Elasticsearch alias swap,
and the events missed while Elasticsearch was down."""

from datetime import timedelta
from io import StringIO
from unittest import mock

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from audit.tests.factories import BASE_TIME, events_create
from search.documents import INDEX_ALIAS
from search.models import EventSearchEntry, ReindexRun
from search.selectors import index_lag
from search.services import events_index, search_sweep

pytestmark = pytest.mark.django_db


def _entries(tenant) -> set:
    return set(
        EventSearchEntry.objects.filter(tenant_id=tenant.pk).values_list("event_id", flat=True)
    )


def test_it_rebuilds_the_postgresql_index_of_every_tenant(tenant, other_tenant, capsys):
    mine = events_create(tenant_id=tenant.pk, count=3)
    theirs = events_create(tenant_id=other_tenant.pk, count=2)
    call_command("reindex_search", "--backend", "postgresql")
    assert _entries(tenant) == {e.id for e in mine}
    assert _entries(other_tenant) == {e.id for e in theirs}
    assert "postgresql: reindexed 5 events" in capsys.readouterr().out
    assert ReindexRun.objects.get().finished_at is not None
    # A full run moves the sync marks, so the sweep has nothing left to do.
    assert index_lag() == {"postgresql": 0}
    assert search_sweep() == {}


def test_it_reindexes_only_events_since_the_given_date(tenant):
    old = events_create(tenant_id=tenant.pk, occurred_at=BASE_TIME - timedelta(days=2))
    new = events_create(tenant_id=tenant.pk, occurred_at=BASE_TIME)
    call_command(
        "reindex_search", "--backend", "postgresql", "--since", BASE_TIME.date().isoformat()
    )
    assert _entries(tenant) == {new[0].id}
    assert old[0].id not in _entries(tenant)
    assert index_lag() == {"postgresql": 2}  # --since covers a window: the marks stay


def test_since_is_when_events_arrived_so_an_outages_late_events_are_covered(tenant):
    """After an outage the events stored meanwhile are what needs indexing, whenever they
    occurred (a batch posted late carries old times)."""
    earlier = events_create(
        tenant_id=tenant.pk,
        occurred_at=BASE_TIME - timedelta(days=2),
        received_at=BASE_TIME - timedelta(days=2),
    )
    late = events_create(
        tenant_id=tenant.pk, occurred_at=BASE_TIME - timedelta(days=30), received_at=BASE_TIME
    )
    call_command(
        "reindex_search", "--backend", "postgresql", "--since", BASE_TIME.date().isoformat()
    )
    assert _entries(tenant) == {late[0].id}
    assert earlier[0].id not in _entries(tenant)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", ""], "--since needs a date"),
        (["--since", "last tuesday"], "not an ISO 8601 date"),
        (["--since", "2026-13-45"], "not an ISO 8601 date"),
        (["--batch-size", "0"], "--batch-size"),
        (["--backend", "elasticsearch"], "ELASTICSEARCH_URL"),
    ],
)
def test_it_refuses_bad_input_with_a_clear_error(settings, args, message):
    settings.ELASTICSEARCH_URL = ""
    with pytest.raises(CommandError, match=message):
        call_command("reindex_search", *args)


def test_it_resumes_an_interrupted_run_after_the_last_saved_batch(tenant, monkeypatch):
    events = events_create(tenant_id=tenant.pk, count=5)
    from search import services

    sent, real_send = [], services._send

    def failing_after_two_batches(backend, *, event_ids, **options):
        if len(sent) == 2:
            raise RuntimeError("killed")
        sent.append(event_ids)
        return real_send(backend, event_ids=event_ids, **options)

    monkeypatch.setattr(services, "_send", failing_after_two_batches)
    with pytest.raises(RuntimeError):
        call_command("reindex_search", "--backend", "postgresql", "--batch-size", "2")
    assert ReindexRun.objects.get().cursor == {str(tenant.pk): 4}

    monkeypatch.setattr(
        services, "_send", lambda b, **kw: sent.append(kw["event_ids"]) or real_send(b, **kw)
    )
    call_command("reindex_search", "--backend", "postgresql", "--batch-size", "2")
    assert sent[2] == [str(events[4].id)]  # only the rest, not the first four again
    assert _entries(tenant) == {e.id for e in events}
    assert ReindexRun.objects.get().finished_at is not None


def test_it_fails_clearly_and_keeps_progress_when_elasticsearch_is_down(es_refused, tenant):
    events_create(tenant_id=tenant.pk, count=2)
    with pytest.raises(CommandError, match="run the same command again to resume"):
        call_command("reindex_search", "--backend", "elasticsearch", "--since", "2020-01-01")
    assert ReindexRun.objects.get().finished_at is None


def test_it_indexes_the_events_missed_while_elasticsearch_was_down(
    settings, closed_port, fake_es, tenant
):
    from search.backends.elasticsearch import alias_ensure

    alias_ensure()
    before = events_create(tenant_id=tenant.pk, count=2, occurred_at=BASE_TIME)
    call_command("reindex_search", "--backend", "elasticsearch", "--since", "2020-01-01")
    working_url = settings.ELASTICSEARCH_URL

    settings.ELASTICSEARCH_URL = f"http://127.0.0.1:{closed_port}"
    missed = events_create(tenant_id=tenant.pk, count=3, occurred_at=BASE_TIME + timedelta(days=1))
    # The index task leaves Elasticsearch to the sweep (PostgreSQL has the events).
    events_index(tenant_id=tenant.pk, event_ids=[str(e.id) for e in missed])
    assert set(fake_es.documents(INDEX_ALIAS)) == {str(e.id) for e in before}

    settings.ELASTICSEARCH_URL = working_url
    call_command(
        "reindex_search",
        "--backend",
        "elasticsearch",
        "--since",
        (BASE_TIME + timedelta(days=1)).isoformat(),
    )
    assert set(fake_es.documents(INDEX_ALIAS)) == {str(e.id) for e in before + missed}


def test_it_rebuilds_elasticsearch_into_a_new_index_and_swaps_the_alias(fake_es, tenant):
    from search.backends.elasticsearch import alias_ensure, alias_indices

    alias_ensure()
    (old_index,) = alias_indices()
    events = events_create(tenant_id=tenant.pk, count=3)
    call_command("reindex_search", "--backend", "elasticsearch")

    (new_index,) = alias_indices()
    assert new_index != old_index
    assert old_index not in fake_es.indices  # the previous index is dropped after the swap
    assert set(fake_es.indices[new_index]) == {str(e.id) for e in events}
    run = ReindexRun.objects.get(backend="elasticsearch")
    assert run.target_index == new_index
    assert run.finished_at is not None


def _purged_before_search_heard_of_it(tenant, *, count: int) -> None:
    """``count`` indexed events of ``tenant`` purged, their entries left behind, as every
    purge did before ``events_purged``: in this test's transaction the purge's on-commit
    work never runs."""
    from audit.ledger.services import events_purge
    from audit.tests.ledger_factories import chained_events_create

    old = BASE_TIME - timedelta(days=400)
    purged = chained_events_create(
        tenant_id=tenant.pk, count=count, occurred_at=old, received_at=old, actor_name="Mallory"
    )
    call_command("reindex_search", "--backend", "postgresql", stdout=StringIO())
    assert events_purge(tenant_id=tenant.pk, before=old + timedelta(days=1)).removed == count
    assert EventSearchEntry.objects.filter(event_id__in=[e.id for e in purged]).count() == count


@pytest.mark.parametrize("since", [[], ["--since", "2020-01-01"]], ids=["full", "since"])
def test_it_removes_the_entries_of_purged_events(tenant, other_tenant, capsys, since):
    _purged_before_search_heard_of_it(tenant, count=3)
    kept = events_create(tenant_id=tenant.pk, count=2)
    theirs = events_create(tenant_id=other_tenant.pk, count=2)

    call_command("reindex_search", "--backend", "postgresql", *since)

    out = capsys.readouterr().out
    assert "postgresql: removed 3 entries of purged events (acme 3)" in out
    assert "postgresql: reindexed" in out
    assert _entries(tenant) == {e.id for e in kept}
    assert _entries(other_tenant) == {e.id for e in theirs}
    assert not EventSearchEntry.objects.filter(vector="mallory").exists()

    call_command("reindex_search", "--backend", "postgresql", *since)
    assert "postgresql: nothing of purged events left in the index" in capsys.readouterr().out


def test_it_deletes_the_elasticsearch_documents_of_purged_events(fake_es, tenant, capsys):
    """The documents are deleted by tenant and sequence; the client's delete is mocked (the
    stand-in does not evaluate queries), the rest of the run goes to the stand-in."""
    from audit.models import Checkpoint
    from search.models import Backend, PurgeCleanup

    PurgeCleanup.objects.create(tenant=tenant, backend=Backend.ELASTICSEARCH, purged_through=3)
    _purged_before_search_heard_of_it(tenant, count=3)
    events_create(tenant_id=tenant.pk, count=2)
    through = Checkpoint.objects.get(tenant=tenant).sequence

    with mock.patch(
        "elasticsearch.Elasticsearch.delete_by_query",
        return_value={"deleted": 3, "failures": [], "version_conflicts": 0, "timed_out": False},
    ) as delete:
        call_command("reindex_search", "--backend", "elasticsearch")

    delete.assert_called_once_with(
        index=INDEX_ALIAS,
        query={
            "bool": {
                "filter": [
                    {"term": {"tenant": tenant.pk}},
                    {"range": {"sequence": {"lte": through}}},
                ]
            }
        },
        conflicts="proceed",
        refresh=True,
        wait_for_completion=True,
    )
    assert "elasticsearch: removed 3 documents of purged events (acme 3)" in capsys.readouterr().out
    assert PurgeCleanup.objects.get(tenant=tenant).removed_through == 3


def test_a_failed_removal_of_purged_documents_leaves_the_run_to_resume(fake_es, tenant):
    _purged_before_search_heard_of_it(tenant, count=2)

    timed_out = {"deleted": 0, "failures": [], "version_conflicts": 0, "timed_out": True}
    with (
        mock.patch("elasticsearch.Elasticsearch.delete_by_query", return_value=timed_out),
        pytest.raises(CommandError, match=r"not all removed .*run the same command again"),
    ):
        call_command("reindex_search", "--backend", "elasticsearch", stdout=StringIO())

    assert ReindexRun.objects.get(backend="elasticsearch").finished_at is None
