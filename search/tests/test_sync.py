"""Sync: events_ingested → index task (exact ids), the high-water mark, the sweep, and
ingestion left alone when Elasticsearch or the broker is down."""

import logging
import time
import uuid
from datetime import UTC, datetime

import pytest
from kombu.exceptions import OperationalError as KombuOperationalError

from accounts.models import Tenant
from audit.models import AuditEvent
from audit.services.ingest import events_ingest
from audit.signals import events_ingested
from audit.tests.factories import events_create
from search.models import EventSearchEntry, IndexProgress
from search.receivers import index_publish_breaker
from search.selectors import index_lag
from search.services import events_index, index_progress_advance, search_sweep
from search.tasks import sweep_index
from search.tests.conftest import found


@pytest.fixture
def published(monkeypatch):
    """Captures what the receiver publishes instead of sending it to RabbitMQ."""
    calls = _Calls()

    def capture(args, kwargs=None, **options):
        calls.append(args)
        calls.kwargs.append(kwargs)

    monkeypatch.setattr("search.tasks.index_events.apply_async", capture)
    return calls


class _Calls(list):
    """The args of each publish; ``kwargs`` holds the keyword arguments alongside."""

    def __init__(self):
        super().__init__()
        self.kwargs: list = []


def _mark(tenant, backend: str) -> int:
    row = IndexProgress.objects.filter(tenant=tenant, backend=backend).first()
    return row.last_sequence if row else 0


def test_it_enqueues_exactly_the_ingested_ids(published):
    ids = [uuid.uuid4() for _ in range(3)]
    events_ingested.send(sender=AuditEvent, tenant_id=7, event_ids=ids)
    assert published == [[7, [str(i) for i in ids]]]


def test_it_splits_more_than_a_thousand_ids_into_messages_of_a_thousand(published):
    ids = [str(uuid.uuid4()) for _ in range(2500)]
    events_ingested.send(sender=AuditEvent, tenant_id=7, event_ids=ids, first_sequence=11)
    assert [len(args[1]) for args in published] == [1000, 1000, 500]
    assert [i for args in published for i in args[1]] == ids
    # each message says where its own ids start in the chain
    assert [kw["first_sequence"] for kw in published.kwargs] == [11, 1011, 2011]


def test_each_index_message_names_the_requests_whose_events_it_holds(published):
    ids = [str(uuid.uuid4()) for _ in range(2500)]
    requests = ["req-a"] * 1500 + [None] * 10 + ["req-b"] * 990

    events_ingested.send(
        sender=AuditEvent, tenant_id=7, event_ids=ids, first_sequence=1, request_ids=requests
    )
    events_ingested.send(sender=AuditEvent, tenant_id=7, event_ids=ids[:1])  # no request ids

    assert [kw["request_ids"] for kw in published.kwargs] == [
        ["req-a"],
        ["req-a", "req-b"],
        ["req-b"],
        [],
    ]


@pytest.mark.parametrize(
    ("request_ids", "request_id", "several"),
    [
        (["req-a"], "req-a", None),  # one request: its id, as the ingest task's lines
        (["req-a", "req-b"], None, ["req-a", "req-b"]),  # several: each named, none chosen
        ([], None, None),  # the sweep's or an older message
    ],
)
def test_the_index_tasks_log_lines_carry_the_request_ids(
    monkeypatch, caplog, request_ids, request_id, several
):
    from search.tasks import index_events
    from traceledger.request_id import RequestIdLogFilter

    def index(**kwargs):
        logging.getLogger("search.services").warning("indexing slowly")
        return 0

    monkeypatch.setattr("search.services.events_index", index)
    caplog.handler.addFilter(RequestIdLogFilter())  # as the console handler: at emit time
    with caplog.at_level(logging.INFO):
        index_events.apply(args=[7, [str(uuid.uuid4())]], kwargs={"request_ids": request_ids})
        logging.getLogger("search.services").warning("after the task")

    lines = [r for r in caplog.records if r.name in ("search.services", "celery.app.trace")]
    assert [r.getMessage().split("[")[0] for r in lines] == [
        "indexing slowly",
        "Task search.index_events",
        "after the task",
    ]
    assert [(r.request_id, getattr(r, "request_ids", None)) for r in lines[:2]] == [
        (request_id, several)
    ] * 2
    assert (lines[2].request_id, getattr(lines[2], "request_ids", None)) == (None, None)


def test_indexing_with_a_first_sequence_does_not_read_the_rows_back(tenant):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    events = [_wire_event(n) for n in range(3)]
    stored = events_ingest(tenant_id=tenant.pk, events=events).stored_ids
    first = AuditEvent.objects.get(pk=stored[0]).sequence

    with CaptureQueriesContext(connection) as queries:
        assert events_index(tenant_id=tenant.pk, event_ids=stored, first_sequence=first) == 3

    reads = [q["sql"] for q in queries if q["sql"].startswith('SELECT "audit_auditevent"')]
    assert reads == []

    assert EventSearchEntry.objects.filter(event_id__in=stored).count() == 3
    assert _mark(tenant, "postgresql") == first + 2


def test_it_never_raises_into_ingestion_when_the_broker_refuses(monkeypatch, caplog):
    def refuse(*args, **kwargs):
        raise KombuOperationalError("[Errno 111] Connection refused")

    monkeypatch.setattr("search.tasks.index_events.apply_async", refuse)
    events_ingested.send(sender=AuditEvent, tenant_id=7, event_ids=[str(uuid.uuid4())])
    assert "the sweep will catch up" in caplog.text


def test_an_error_that_is_not_the_brokers_keeps_its_traceback(monkeypatch, caplog):
    def bug(*args, **kwargs):
        raise KeyError("first_sequence")

    monkeypatch.setattr("search.tasks.index_events.apply_async", bug)
    events_ingested.send(sender=AuditEvent, tenant_id=7, event_ids=[str(uuid.uuid4())])
    [line] = [r for r in caplog.records if r.getMessage().startswith("search indexing not")]
    assert line.exc_info


def test_after_a_failed_publish_it_pauses_publishing_then_tries_again(monkeypatch, caplog):
    """While RabbitMQ blocks publishers each try costs seconds: one try per pause, not one
    per ingest transaction; the sweep indexes what was stored meanwhile."""
    tries = []

    def refuse(*args, **kwargs):
        tries.append(args)
        raise KombuOperationalError("timed out")

    monkeypatch.setattr("search.tasks.index_events.apply_async", refuse)
    for _ in range(3):
        events_ingested.send(sender=AuditEvent, tenant_id=7, event_ids=[str(uuid.uuid4())] * 1500)
    assert len(tries) == 1  # not the second chunk, nor the next two transactions
    [line] = [r for r in caplog.records if r.getMessage().startswith("search indexing not")]
    assert "(OperationalError: timed out)" in line.getMessage()
    assert not line.exc_info  # the broker away is an outage, not a bug

    monkeypatch.setattr(index_publish_breaker, "reset_timeout", 0)  # the pause is over
    events_ingested.send(sender=AuditEvent, tenant_id=7, event_ids=[str(uuid.uuid4())])
    assert len(tries) == 2


def _wire_event(n: int) -> dict:
    now = datetime.now(UTC).isoformat()
    return {
        "id": str(uuid.uuid4()),
        "event_id": f"wire-{n}",
        "occurred_at": now,
        "received_at": now,
        "action": "payroll.export",
        "outcome": "success",
        "severity": "info",
        "actor_id": "alice",
        "actor_type": "user",
        "actor_name": "Alice",
        "target_id": "",
        "target_type": "",
        "target_name": "",
        "source_ip": None,
        "user_agent": "",
        "description": "exported the payroll report",
        "metadata": {},
    }


@pytest.mark.django_db
def test_it_leaves_ingestion_unaffected_and_postgresql_searchable_when_es_is_down(
    es_refused, tenant, published, django_capture_on_commit_callbacks, search_get
):
    with django_capture_on_commit_callbacks(execute=True):
        result = events_ingest(tenant_id=tenant.pk, events=[_wire_event(1), _wire_event(2)])
    assert len(result.stored_ids) == 2
    assert AuditEvent.objects.filter(tenant=tenant).count() == 2
    assert published == [[tenant.pk, [str(i) for i in result.stored_ids]]]

    # The index task: PostgreSQL gets the events, Elasticsearch is left to the sweep.
    assert events_index(tenant_id=tenant.pk, event_ids=published[0][1]) == 2
    assert EventSearchEntry.objects.filter(tenant_id=tenant.pk).count() == 2
    assert _mark(tenant, "postgresql") == 2
    assert _mark(tenant, "elasticsearch") == 0
    response = search_get("payroll")
    assert sorted(found(response)) == ["wire-1", "wire-2"]
    assert response.json()["degraded"] is True


def _index_task(tenant, events):
    """search.index_events run as the receiver queues it (eagerly, retries included)."""
    from search.tasks import index_events

    ids = [str(e.id) for e in events]
    return index_events.apply(args=[tenant.pk, ids], kwargs={"first_sequence": events[0].sequence})


@pytest.mark.django_db
@pytest.mark.parametrize("outage", ["refused", "open breaker", 503, 429])
def test_the_index_task_leaves_an_elasticsearch_outage_to_the_sweep_in_one_line(
    request, tenant, caplog, closed_breaker, outage
):
    """PostgreSQL has the events and its mark moved: retrying only waited on the outage
    again, five times per ingest batch, and ended in an ERROR with a traceback."""
    if outage == "refused":
        request.getfixturevalue("es_refused")
    else:
        fake = request.getfixturevalue("fake_es")
        if outage == "open breaker":
            closed_breaker.open()
        else:
            fake.answer_with(outage)
    batches = [events_create(tenant_id=tenant.pk, count=2) for _ in range(4)]

    results = [_index_task(tenant, events) for events in batches]

    assert [r.state for r in results] == ["SUCCESS"] * 4  # no retry, no failure
    [line] = _warnings(caplog)  # one line for the four batches (throttled per backend)
    assert line.name == "search.services.index"
    assert line.exc_info is None
    assert line.getMessage().startswith(
        "search indexing left to the sweep: elasticsearch unavailable ("
    ), line.getMessage()
    assert _mark(tenant, "postgresql") == 8
    assert _mark(tenant, "elasticsearch") == 0
    assert index_lag() == {"postgresql": 0, "elasticsearch": 8}


@pytest.mark.django_db
def test_the_index_task_raises_a_bad_request_of_elasticsearch_as_the_bug_it_is(
    fake_es, tenant, caplog
):
    from elasticsearch import BadRequestError

    fake_es.answer_with(400, "mapper_parsing_exception")
    events = events_create(tenant_id=tenant.pk, count=2)

    result = _index_task(tenant, events)

    assert result.state == "FAILURE"
    # Celery wraps what it cannot pickle; the class is what matters.
    assert result.result.exc_cls_name == BadRequestError.__name__
    assert not [r for r in caplog.records if "left to the sweep" in r.getMessage()]
    assert _mark(tenant, "postgresql") == 2  # PostgreSQL's part is done all the same


@pytest.mark.django_db
def test_it_moves_the_mark_only_over_a_contiguous_run(tenant):
    args = {"tenant_id": tenant.pk, "backend": "postgresql"}
    assert index_progress_advance(**args, first=11, last=20) is False
    assert _mark(tenant, "postgresql") == 0
    assert index_progress_advance(**args, first=1, last=10) is True
    assert index_progress_advance(**args, first=11, last=20) is True
    assert index_progress_advance(**args, first=5, last=15) is False
    assert _mark(tenant, "postgresql") == 20


@pytest.mark.django_db
def test_it_sweeps_events_whose_signal_was_missed(tenant, other_tenant, search_get):
    events_create(tenant_id=tenant.pk, count=5, description="payroll exported")
    events_create(tenant_id=other_tenant.pk, count=2)
    assert found(search_get("payroll")) == []
    assert index_lag() == {"postgresql": 7}

    assert search_sweep(batch_size=2) == {"postgresql": 7}
    assert len(found(search_get("payroll"))) == 5
    assert _mark(tenant, "postgresql") == 5
    assert _mark(other_tenant, "postgresql") == 2
    assert index_lag() == {"postgresql": 0}
    assert search_sweep() == {}


@pytest.mark.django_db
def test_it_sweeps_postgresql_and_skips_a_down_elasticsearch(es_refused, tenant):
    events_create(tenant_id=tenant.pk, count=3)
    assert search_sweep() == {"postgresql": 3}
    assert index_lag() == {"postgresql": 0, "elasticsearch": 3}


def _warnings(caplog) -> list[logging.LogRecord]:
    # The Elasticsearch client's own line for each failed request is not the sweep's.
    return [
        r
        for r in caplog.records
        if r.levelno >= logging.WARNING and not r.name.startswith("elastic_transport")
    ]


def _one_quiet_line(caplog, logger: str, start: str) -> str:
    [line] = _warnings(caplog)
    assert line.name == logger
    assert line.exc_info is None
    message = line.getMessage()
    assert message.startswith(start), message
    assert message.endswith("); retrying on the next run") and "\n" not in message, message
    return message


def test_the_periodic_sweep_skips_quietly_while_the_database_is_down(database_down, caplog):
    database_down()
    for _ in range(2):  # beat: every 30 s
        assert sweep_index() == {}
    _one_quiet_line(
        caplog, "search.tasks", "search sweep skipped: database unavailable (OperationalError: "
    )


@pytest.mark.django_db
def test_the_periodic_sweep_skips_a_down_elasticsearch_in_one_line(es_refused, tenant, caplog):
    events_create(tenant_id=tenant.pk, count=3)
    # Two tenants behind: Elasticsearch is tried once per run, not once per tenant.
    events_create(tenant_id=Tenant.objects.create(name="second").pk, count=1)
    assert sweep_index() == {"postgresql": 4}
    assert sweep_index() == {}
    _one_quiet_line(
        caplog, "search.services.sweep", "search sweep skips elasticsearch: unavailable ("
    )
    assert index_lag() == {"postgresql": 0, "elasticsearch": 4}


@pytest.mark.django_db
@pytest.mark.parametrize("status", [503, 500, 429])
def test_the_periodic_sweep_skips_an_elasticsearch_answering_5xx_or_429_in_one_line(
    fake_es, tenant, caplog, status
):
    """Elasticsearch 9's ApiError is no TransportError: a 503 made the sweep raise."""
    events_create(tenant_id=tenant.pk, count=2)
    fake_es.answer_with(status)
    assert sweep_index() == {"postgresql": 2}
    message = _one_quiet_line(
        caplog, "search.services.sweep", "search sweep skips elasticsearch: unavailable ("
    )
    assert f"ElasticsearchUnavailable: Elasticsearch answered {status}" in message
    assert index_lag() == {"postgresql": 0, "elasticsearch": 2}


@pytest.mark.django_db
def test_the_periodic_sweep_raises_a_bad_request_of_elasticsearch_as_the_bug_it_is(fake_es, tenant):
    from elasticsearch import BadRequestError

    events_create(tenant_id=tenant.pk, count=2)
    fake_es.answer_with(400, "illegal_argument_exception")
    with pytest.raises(BadRequestError):
        sweep_index()
    assert index_lag() == {"postgresql": 0, "elasticsearch": 2}


@pytest.mark.django_db
def test_the_periodic_sweep_raises_a_backend_bug_after_indexing_the_others(
    fake_es, tenant, monkeypatch
):
    from search.backends.elasticsearch import ElasticsearchBackend

    def bug(self, **kwargs):
        raise TypeError("index_events() got an unexpected keyword argument")

    monkeypatch.setattr(ElasticsearchBackend, "index_events", bug)
    events_create(tenant_id=tenant.pk, count=2)
    with pytest.raises(TypeError, match="unexpected keyword"):
        sweep_index()
    assert index_lag()["postgresql"] == 0


@pytest.mark.django_db
def test_it_sweeps_into_elasticsearch_when_it_is_back(fake_es, tenant):
    from search.backends.elasticsearch import alias_ensure
    from search.documents import INDEX_ALIAS

    alias_ensure()
    events = events_create(tenant_id=tenant.pk, count=3)
    assert search_sweep() == {"postgresql": 3, "elasticsearch": 3}
    assert set(fake_es.documents(INDEX_ALIAS)) == {str(e.id) for e in events}
    assert index_lag() == {"postgresql": 0, "elasticsearch": 0}


@pytest.mark.integration
def test_a_real_worker_indexes_the_ids_of_the_signal(celery_worker_process, tenant):
    events = events_create(tenant_id=tenant.pk, count=3, description="payroll exported")
    events_ingested.send(sender=AuditEvent, tenant_id=tenant.pk, event_ids=[e.id for e in events])
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if EventSearchEntry.objects.filter(tenant_id=tenant.pk).count() == 3:
            break
        time.sleep(0.2)
    assert set(
        EventSearchEntry.objects.filter(tenant_id=tenant.pk).values_list("event_id", flat=True)
    ) == {e.id for e in events}, celery_worker_process.log()[-3000:]
    assert _mark(tenant, "postgresql") == 3


@pytest.mark.django_db
def test_it_creates_the_index_and_alias_on_a_fresh_cluster_then_sweeps_into_it(fake_es, tenant):
    from search.backends.elasticsearch import alias_indices
    from search.documents import INDEX_ALIAS

    events = events_create(tenant_id=tenant.pk, count=2)
    assert alias_indices() == []
    assert search_sweep() == {"postgresql": 2, "elasticsearch": 2}
    assert len(alias_indices()) == 1
    assert set(fake_es.documents(INDEX_ALIAS)) == {str(e.id) for e in events}


def test_index_task_retries_while_the_database_is_away_and_counts_them(monkeypatch):
    from django.db import OperationalError

    from search.metrics import INDEX_RETRIES
    from search.tasks import index_events

    def retries() -> float:
        [family] = INDEX_RETRIES.collect()
        return sum(
            s.value
            for s in family.samples
            if s.name.endswith("_total") and s.labels["error"] == "OperationalError"
        )

    calls = []

    def flaky(*, tenant_id, event_ids, first_sequence):
        calls.append(event_ids)
        if len(calls) <= 2:
            raise OperationalError("the database is away")
        return len(event_ids)

    monkeypatch.setattr("search.services.events_index", flaky)
    before = retries()

    result = index_events.apply(args=[7, [str(uuid.uuid4())]])

    assert result.get() == 1 and len(calls) == 3
    assert retries() - before == 2
