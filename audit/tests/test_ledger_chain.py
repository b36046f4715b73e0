"""The chain API the ingest worker calls, and the canonical form's database round trip."""

import functools
import hashlib
import itertools
import json
import threading
from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest
import rfc8785
from django.db import close_old_connections, connection, transaction
from hypothesis import given, settings
from hypothesis import strategies as st

from audit.ledger.canonical import (
    GENESIS_HASH,
    STRING_FIELDS,
    CanonicalError,
    _json_dumps_is_jcs,
    _template_assembled,
    canonical_bytes,
    canonical_object,
    canonical_template,
    event_hash,
    event_hash_templated,
    jcs_dumps,
)
from audit.ledger.chain import chain_head_lock, chain_prepare, chain_rows
from audit.models import AuditEvent, ChainHead
from audit.tests.ledger_factories import chained_events_create, event_row
from audit.validation import FieldError, metadata_check_encoded


@pytest.mark.parametrize(
    "source_ip",
    [
        "203.0.113.7",
        "2001:db8::1",
        "2001:0DB8:0000:0000:0000:0000:0000:0001",
        "::ffff:1.2.3.4",
        "::ffff:102:304",
        "1:0:1:1:1:1:1:1",
        "::1",
        None,
    ],
)
def test_it_hashes_a_row_identically_before_insert_and_after_reading_it_back(tenant, source_ip):
    row = event_row(
        tenant_id=tenant.id,
        source_ip=source_ip,
        occurred_at="2026-03-04T05:06:07.1234567+02:00",  # 7 digits, an offset: normalised
        metadata={"z": 1, "a": {"y": [3, 2.0, 1e2, 0.1], "b": "é\u2028😀"}, "m": None},
    )
    with transaction.atomic():
        chain_rows(head=chain_head_lock(tenant_id=tenant.id), rows=[row])
        AuditEvent.objects.create(**row)
    stored = AuditEvent.objects.get(pk=row["id"])
    as_values = AuditEvent.objects.filter(pk=row["id"]).values().get()

    assert canonical_bytes(stored) == canonical_bytes(row) == canonical_bytes(as_values)
    assert stored.hash == event_hash(stored.prev_hash, stored) == row["hash"]


@pytest.mark.parametrize(
    "number", [1e20, -1.5e16, 1e16, 1.2345678901234568e20, 1e300, -1.7976931348623157e308]
)
def test_a_float_beyond_the_safe_integers_hashes_the_same_once_read_back(tenant, number):
    """jsonb gives such a float back as the integer its digits spell (1e20 as
    100000000000000000000): the event must still verify."""
    row = event_row(tenant_id=tenant.id, metadata={"n": number, "deep": [{"m": number}]})
    with transaction.atomic():
        chain_rows(head=chain_head_lock(tenant_id=tenant.id), rows=[row])
        AuditEvent.objects.create(**row)
    stored = AuditEvent.objects.get(pk=row["id"])

    assert type(stored.metadata["n"]) is int  # what makes this case: no longer a float
    assert stored.hash == event_hash(stored.prev_hash, stored) == row["hash"]


def test_it_pins_the_canonical_bytes_of_a_known_event():
    # A fixed vector, also in docs/ledger.md, so other implementations can check themselves.
    row = {
        "id": "6F9619FF-8B86-D011-B42D-00C04FC964FF",
        "tenant_id": 7,
        "sequence": 1,
        "event_id": "evt-1",
        "occurred_at": datetime(2026, 1, 2, 4, 4, 5, 120000, tzinfo=timezone(timedelta(hours=1))),
        "received_at": "2026-01-02T03:04:06Z",
        "action": "invoice.update",
        "actor_id": "u-1",
        "source_ip": "::FFFF:192.0.2.1",
        "metadata": {"b": 1.0, "a": ["x", 2]},
    }
    assert canonical_bytes(row) == (
        b'{"action":"invoice.update","actor_id":"u-1","actor_name":"","actor_type":"user",'
        b'"description":"","event_id":"evt-1","id":"6f9619ff-8b86-d011-b42d-00c04fc964ff",'
        b'"metadata":{"a":["x",2],"b":1},"occurred_at":"2026-01-02T03:04:05.120000Z",'
        b'"outcome":"success","received_at":"2026-01-02T03:04:06.000000Z","sequence":1,'
        b'"severity":"info","source_ip":"::ffff:192.0.2.1","target_id":"","target_name":"",'
        b'"target_type":"","user_agent":""}'
    )
    assert event_hash(GENESIS_HASH, row) == EXPECTED_VECTOR_HASH


EXPECTED_VECTOR_HASH = "70cf69b76a32e326f2346750f599d5f1e6ce5909d5de564880c8b7f7b09c55c7"


def _chain_vector_rows() -> list[dict]:
    """Two events as the ingest worker holds them, to be chained at sequences 1 and 2."""
    return [
        {
            "id": "0b8f5a52-5d1e-4c39-9a3e-2f8c1d7e6a01",
            "event_id": "evt-vector-1",
            "occurred_at": datetime(2026, 3, 1, 9, 30, 0, tzinfo=UTC),
            "received_at": datetime(2026, 3, 1, 9, 30, 0, 250000, tzinfo=UTC),
            "action": "invoice.create",
            "outcome": "success",
            "severity": "info",
            "actor_id": "user-1",
            "actor_type": "user",
            "actor_name": "Ada",
            "target_id": "inv-1",
            "target_type": "invoice",
            "target_name": "",
            "source_ip": "203.0.113.7",
            "user_agent": "curl/8",
            "description": "Ada created invoice 1",
            "metadata": {"total": 12, "currency": "EUR"},
        },
        {
            "id": "0b8f5a52-5d1e-4c39-9a3e-2f8c1d7e6a02",
            "event_id": "evt-vector-2",
            "occurred_at": datetime(2026, 3, 1, 9, 31, 0, 500000, tzinfo=UTC),
            "received_at": datetime(2026, 3, 1, 9, 31, 1, 1, tzinfo=UTC),
            "action": "invoice.void",
            "outcome": "failure",
            "severity": "warning",
            "actor_id": "svc-billing",
            "actor_type": "service",
            "actor_name": "",
            "target_id": "inv-1",
            "target_type": "invoice",
            "target_name": "Invoice 1",
            "source_ip": "2001:db8::1",
            "user_agent": "",
            "description": 'Voiding refusé: "paid"',
            "metadata": {"reason": "paid", "attempts": [1, 2], "final": True, "note": None},
        },
    ]


# docs/ledger.md §2, written out by hand: RFC 8785, keys sorted, UTC with six digits and Z.
CHAIN_VECTOR_CANONICAL = [
    '{"action":"invoice.create","actor_id":"user-1","actor_name":"Ada","actor_type":"user",'
    '"description":"Ada created invoice 1","event_id":"evt-vector-1",'
    '"id":"0b8f5a52-5d1e-4c39-9a3e-2f8c1d7e6a01","metadata":{"currency":"EUR","total":12},'
    '"occurred_at":"2026-03-01T09:30:00.000000Z","outcome":"success",'
    '"received_at":"2026-03-01T09:30:00.250000Z","sequence":1,"severity":"info",'
    '"source_ip":"203.0.113.7","target_id":"inv-1","target_name":"","target_type":"invoice",'
    '"user_agent":"curl/8"}',
    '{"action":"invoice.void","actor_id":"svc-billing","actor_name":"","actor_type":"service",'
    r'"description":"Voiding refusé: \"paid\"","event_id":"evt-vector-2",'
    '"id":"0b8f5a52-5d1e-4c39-9a3e-2f8c1d7e6a02",'
    '"metadata":{"attempts":[1,2],"final":true,"note":null,"reason":"paid"},'
    '"occurred_at":"2026-03-01T09:31:00.500000Z","outcome":"failure",'
    '"received_at":"2026-03-01T09:31:01.000001Z","sequence":2,"severity":"warning",'
    '"source_ip":"2001:db8::1","target_id":"inv-1","target_name":"Invoice 1",'
    '"target_type":"invoice","user_agent":""}',
]
# SHA-256(32 zero bytes || canonical 1), then SHA-256(raw bytes of hash 1 || canonical 2).
CHAIN_VECTOR_HASHES = [
    "858ff375d53f494cad2173a1203661c77447a42ad294a03bcdaf2f5405f88c1e",
    "6da9b54a0665c7f78d444628a4f876f144ac34dce3d1c9d15e427f78afab6dca",
]


def test_the_pinned_chain_vector_is_sha256_of_the_previous_hash_and_the_canonical_text():
    """The vector below, derived with hashlib alone: no code of the ledger involved."""
    prev = "0" * 64
    for canonical, expected in zip(CHAIN_VECTOR_CANONICAL, CHAIN_VECTOR_HASHES, strict=True):
        assert hashlib.sha256(bytes.fromhex(prev) + canonical.encode()).hexdigest() == expected
        prev = expected


@pytest.mark.parametrize("worker_path", [True, False], ids=["templates", "whole-rows"])
def test_the_chain_hashes_two_known_events_to_the_pinned_vector(tenant, worker_path):
    rows = _chain_vector_rows()
    with transaction.atomic():
        templates = [chain_prepare(row) for row in rows] if worker_path else None
        chain_rows(head=chain_head_lock(tenant_id=tenant.id), rows=rows, templates=templates)
        AuditEvent.objects.bulk_create([AuditEvent(**row) for row in rows])

    assert [row["sequence"] for row in rows] == [1, 2]
    assert [row["prev_hash"] for row in rows] == ["0" * 64, CHAIN_VECTOR_HASHES[0]]
    assert [row["hash"] for row in rows] == CHAIN_VECTOR_HASHES
    stored = list(AuditEvent.objects.filter(tenant=tenant).order_by("sequence"))
    assert [canonical_bytes(event).decode() for event in stored] == CHAIN_VECTOR_CANONICAL
    # Verification recomputes from the rows read back: the same vector.
    assert [event_hash(event.prev_hash, event) for event in stored] == CHAIN_VECTOR_HASHES
    assert ChainHead.objects.get(tenant=tenant).hash == CHAIN_VECTOR_HASHES[1]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("occurred_at", datetime(2026, 1, 1)),  # naive
        ("metadata", {"beyond_every_double": 10**400}),
        ("metadata", {"nan": float("nan")}),
        ("source_ip", "not-an-ip"),
        ("id", "nope"),
        ("actor_name", None),
    ],
)
def test_it_refuses_a_row_it_cannot_canonicalize(field, value):
    with pytest.raises(CanonicalError):
        canonical_bytes({**event_row(tenant_id=1), "sequence": 1, field: value})


def test_it_numbers_events_without_gaps_and_links_each_to_the_previous(tenant):
    chained_events_create(tenant_id=tenant.id, count=3)
    chained_events_create(tenant_id=tenant.id, count=2, start=3)

    events = list(AuditEvent.objects.filter(tenant=tenant).order_by("sequence"))
    assert [e.sequence for e in events] == [1, 2, 3, 4, 5]
    assert events[0].prev_hash == GENESIS_HASH
    for before, after in itertools.pairwise(events):
        assert after.prev_hash == before.hash
    head = ChainHead.objects.get(tenant=tenant)
    assert (head.sequence, head.hash) == (5, events[-1].hash)


@pytest.mark.django_db(transaction=True)
def test_it_refuses_to_lock_the_head_outside_a_transaction(tenant):
    with pytest.raises(transaction.TransactionManagementError):
        chain_head_lock(tenant_id=tenant.id)


def test_it_refuses_a_row_of_another_tenant(tenant, other_tenant):
    with transaction.atomic(), pytest.raises(ValueError, match="cannot join"):
        chain_rows(
            head=chain_head_lock(tenant_id=tenant.id),
            rows=[event_row(tenant_id=other_tenant.id)],
        )


def _concurrent_writers(tenant_ids, batches_per_writer, batch_size):
    errors = []
    barrier = threading.Barrier(len(tenant_ids))

    def write(tenant_id, start):
        try:
            barrier.wait(timeout=10)
            for b in range(batches_per_writer):
                chained_events_create(
                    tenant_id=tenant_id, count=batch_size, start=start + b * batch_size
                )
        except Exception as exc:  # surfaced by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=write, args=(tenant_id, i * 1000))
        for i, tenant_id in enumerate(tenant_ids)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    close_old_connections()
    return errors


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_on_one_tenant_never_fork_or_skip(tenant):
    errors = _concurrent_writers([tenant.id] * 4, batches_per_writer=5, batch_size=7)

    assert errors == []
    events = list(AuditEvent.objects.filter(tenant=tenant).order_by("sequence"))
    assert [e.sequence for e in events] == list(range(1, 4 * 5 * 7 + 1))
    prev = GENESIS_HASH
    for event in events:
        assert event.prev_hash == prev
        assert event.hash == event_hash(prev, event)
        prev = event.hash


@pytest.mark.django_db(transaction=True)
def test_a_locked_head_does_not_block_another_tenant(tenant, other_tenant):
    locked = threading.Event()
    release = threading.Event()

    def hold_lock():
        with transaction.atomic():
            chain_head_lock(tenant_id=tenant.id)
            locked.set()
            release.wait(timeout=20)
        connection.close()

    holder = threading.Thread(target=hold_lock)
    holder.start()
    try:
        assert locked.wait(timeout=10)
        with transaction.atomic():
            # A lock wait here would hit the timeout and raise instead of passing.
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = '2s'")
            chained_events_create(tenant_id=other_tenant.id, count=2)
    finally:
        release.set()
        holder.join(timeout=20)
    assert AuditEvent.objects.filter(tenant=other_tenant).count() == 2


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.integers(min_value=-(2**60), max_value=2**60)
    | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)


def _or_error(fn, value):
    try:
        return fn(value)
    except (CanonicalError, rfc8785.CanonicalizationError, ValueError, UnicodeEncodeError):
        return "error"
    except Exception as exc:  # the offline tool's own error type
        if type(exc).__name__ == "Invalid":
            return "error"
        raise


def _as_json_numbers(value):
    """``value`` as a JSON parser reads its text when numbers are doubles: an integer beyond
    ±(2**53-1) becomes the nearest double (RFC 8785 numbers are IEEE 754 doubles)."""

    def number(text: str):
        integer = int(text)
        return integer if abs(integer) <= 2**53 - 1 else float(integer)

    return json.loads(json.dumps(value), parse_int=number)


@settings(max_examples=200, deadline=None)
@given(JSON_VALUES)
def test_its_fast_serializer_and_the_offline_tools_agree_with_the_rfc8785_package(value):
    tool = _tool_module()
    reference = _or_error(rfc8785.dumps, _as_json_numbers(value))
    assert _or_error(jcs_dumps, value) == reference
    assert _or_error(lambda v: tool.jcs(v).encode(), value) == reference


@settings(max_examples=300, deadline=None)
@given(
    metadata=st.dictionaries(
        st.text(max_size=4) | st.sampled_from(["\U0001f600", "\uffff", "a\U00010000", "é"]),
        JSON_VALUES,
        max_size=5,
    )
)
def test_metadata_the_worker_validates_as_plain_is_what_orjson_writes_as_rfc8785(metadata):
    """The worker's validation walk lets the ledger skip its own check of the metadata
    (``chain_prepare(metadata_is_jcs=True)``): it must never call plain what orjson's sorted
    text does not write as RFC 8785, and it must agree with the ledger's own check."""
    try:
        plain = metadata_check_encoded(metadata, orjson.dumps(metadata))
    except (FieldError, orjson.JSONEncodeError):
        return  # refused by validation: never reaches the ledger
    assert plain == _json_dumps_is_jcs(metadata)
    if plain:
        assert orjson.dumps(metadata, option=orjson.OPT_SORT_KEYS) == rfc8785.dumps(metadata)


def test_metadata_holding_a_value_json_has_no_type_for_is_never_plain():
    metadata = {"at": datetime(2026, 1, 2, tzinfo=UTC), "n": 1}
    assert metadata_check_encoded(metadata, orjson.dumps(metadata)) is False
    assert metadata_check_encoded({"n": 1, "list": [1, "a"]}, b'{"n":1,"list":[1,"a"]}') is True


@functools.cache
def _tool_module():
    from audit.tests.test_ledger_offline_tool import _tool_module as load

    return load()


def _assert_template_hashes_as_the_row(row: dict, sequence: int) -> None:
    """The template made before the lock, completed with ``sequence``, hashes exactly as the
    whole row through the general path; or both refuse it."""
    try:
        expected = event_hash(GENESIS_HASH, {**row, "sequence": sequence})
    except CanonicalError:
        with pytest.raises(CanonicalError):
            canonical_template(row)
        return
    assert event_hash_templated(GENESIS_HASH, canonical_template(row), sequence) == expected


TRICKY_TEXT = st.sampled_from(
    ['"sequence":0', ',"sequence":0,"severity":"', '\\",\\"sequence\\":0', "plain", ""]
) | st.text(max_size=30)


@settings(max_examples=300, deadline=None)
@given(
    metadata=st.dictionaries(
        st.sampled_from(["sequence", "severity", "a", "z"]) | st.text(max_size=8),
        JSON_VALUES | st.integers(0, 9),
        max_size=5,
    ),
    text=TRICKY_TEXT,
    sequence=st.integers(min_value=1, max_value=2**53 - 1),
)
def test_a_template_made_before_the_lock_hashes_exactly_as_the_whole_row(metadata, text, sequence):
    """The worker splits the canonical bytes around the sequence before it takes the lock;
    metadata or strings that look like the sequence's own bytes must not fool the split."""
    row = event_row(tenant_id=1, description=text, target_name=text, metadata=metadata)
    _assert_template_hashes_as_the_row(row, sequence)


def test_chain_rows_with_templates_stores_what_verifies(tenant):
    rows = [
        event_row(tenant_id=tenant.pk, n=n, metadata={"sequence": 0, "severity": n})
        for n in range(5)
    ]
    templates = [chain_prepare(row) for row in rows]
    with transaction.atomic():
        head = chain_head_lock(tenant_id=tenant.pk)
        chain_rows(head=head, rows=rows, templates=templates)
        AuditEvent.objects.bulk_create([AuditEvent(**row) for row in rows])
    prev = GENESIS_HASH
    for stored in AuditEvent.objects.filter(tenant=tenant).order_by("sequence"):
        assert stored.hash == event_hash(prev, stored)
        prev = stored.hash
    assert ChainHead.objects.get(tenant=tenant).hash == prev


@settings(max_examples=300, deadline=None)
@given(
    value=st.uuids(),
    form=st.sampled_from(["str", "upper", "hex", "braces", "urn", "uuid"]),
    moment=st.datetimes(
        min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1), timezones=st.timezones()
    ),
)
def test_the_fast_paths_of_the_canonical_form_write_the_reference_text(value, form, moment):
    """Ids already in canonical form and timestamps already in UTC skip their re-parsing;
    every other spelling must still come out as the reference conversion writes it."""
    raw = {
        "str": str(value),
        "upper": str(value).upper(),
        "hex": value.hex,
        "braces": "{" + str(value) + "}",
        "urn": value.urn,
        "uuid": value,
    }[form]
    row = event_row(tenant_id=1, id=raw, occurred_at=moment, sequence=1)
    obj = canonical_object(row)
    assert obj["id"] == str(value)
    reference = moment.astimezone(UTC).replace(tzinfo=None)
    assert obj["occurred_at"] == reference.isoformat(timespec="microseconds") + "Z"


ANY_TEXT = st.text(max_size=12) | st.sampled_from(["\ud800", "\x00", '"', "\\", "é€😀"])
SOURCE_IPS = st.sampled_from(
    [None, "", "203.0.113.7", "0.0.0.0", "010.1.1.1", "1.2.3", "1.2.3.4 ", "::ffff:1.2.3.4"]
) | st.ip_addresses().map(str)


@settings(max_examples=300, deadline=None)
@given(
    strings=st.fixed_dictionaries(dict.fromkeys(STRING_FIELDS, ANY_TEXT)),
    source_ip=SOURCE_IPS,
    moment=st.datetimes(
        min_value=datetime(1, 1, 2),
        max_value=datetime(9999, 12, 30),
        timezones=st.timezones() | st.just(UTC),
    ),
    metadata=JSON_VALUES.filter(lambda v: isinstance(v, dict)) | st.just({}),
    sequence=st.integers(min_value=1, max_value=2**53 - 1),
)
def test_the_assembled_template_is_the_general_canonical_form(
    strings, source_ip, moment, metadata, sequence
):
    """The worker's template is written in pieces (keys in JCS order around the metadata);
    for any row it must hash exactly as the general path, or be refused as it is."""
    row = event_row(
        tenant_id=1, **strings, source_ip=source_ip, occurred_at=moment, metadata=metadata
    )
    _assert_template_hashes_as_the_row(row, sequence)


def test_the_assembled_template_is_taken_for_the_rows_the_worker_holds():
    row = event_row(
        tenant_id=1, source_ip="203.0.113.7", metadata={"z": [1, None, True], "a": {"b": "c"}}
    )
    head, tail = _template_assembled(row)
    assert head + b"7" + tail == canonical_bytes({**row, "sequence": 7})
    # orjson drops zero microseconds: such timestamps are written as text instead.
    on_the_second = {**row, "received_at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)}
    head, tail = _template_assembled(on_the_second)
    assert b'"received_at":"2026-01-02T03:04:05.000000Z"' in head
    assert head + b"7" + tail == canonical_bytes({**on_the_second, "sequence": 7})
    # Anything the fast path does not cover goes the general way (and gets the same bytes).
    for odd in ({"occurred_at": "2026-01-02T03:04:05Z"}, {"metadata": {"x": 1.5}}):
        assert _template_assembled({**row, **odd}) is None
        canonical_template({**row, **odd})
