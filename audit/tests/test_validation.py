"""The event rules of ARCHITECTURE §4 as ``audit.validation`` applies them (no HTTP)."""

import ipaddress
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from django.db import connection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit.tests.ingest_api_support import valid_event
from audit.validation import (
    EVENT_ID_NAMESPACE,
    MAX_EVENTS_PER_REQUEST,
    InvalidEvents,
    InvalidJSON,
    event_normalize,
    event_uuid,
    events_parse,
)


class _RangeMessage:
    """Equal to the refusal of an integer or of a float beyond ±(2^53-1)."""

    def __eq__(self, other):
        return other in ("Integers must be within ±(2^53-1).", "Numbers must be within ±(2^53-1).")


ANY_RANGE_MESSAGE = _RangeMessage()

CONTRACT_KEYS = {
    "id",
    "event_id",
    "occurred_at",
    "received_at",
    "action",
    "outcome",
    "severity",
    "actor_id",
    "actor_type",
    "actor_name",
    "target_id",
    "target_type",
    "target_name",
    "source_ip",
    "user_agent",
    "description",
    "metadata",
}


def dumps(body) -> bytes:
    """Standard JSON (orjson cannot encode integers beyond 64 bits, which clients may send)."""
    return json.dumps(body).encode()


def errors_of(body) -> dict:
    with pytest.raises(InvalidEvents) as caught:
        events_parse(dumps(body))
    return caught.value.fields


def test_it_builds_the_flat_contract_event_with_every_default_applied():
    (event,), is_list = events_parse(orjson.dumps(valid_event()))
    assert not is_list
    assert set(event) == CONTRACT_KEYS
    assert uuid.UUID(event["id"]) and uuid.UUID(event["event_id"])
    assert event["outcome"] == "success" and event["severity"] == "info"
    assert event["actor_type"] == "user" and event["actor_name"] == ""
    assert event["target_id"] == event["target_type"] == event["target_name"] == ""
    assert event["source_ip"] is None and event["metadata"] == {}
    assert event["user_agent"] == event["description"] == ""


def test_it_keeps_every_given_field():
    given_event = valid_event(
        event_id="evt-1",
        outcome="failure",
        severity="critical",
        actor={"id": "a", "type": "service", "name": "Billing"},
        target={"id": "t", "type": "invoice", "name": "Invoice 7"},
        source_ip="203.0.113.9",
        user_agent="curl/8",
        description="changed the total",
        metadata={"before": 10, "after": [1.5, "x", None, True]},
    )
    (event,), _ = events_parse(orjson.dumps(given_event))
    assert event["event_id"] == "evt-1"
    assert (event["outcome"], event["severity"]) == ("failure", "critical")
    assert (event["actor_id"], event["actor_type"], event["actor_name"]) == (
        "a",
        "service",
        "Billing",
    )
    assert (event["target_id"], event["target_type"], event["target_name"]) == (
        "t",
        "invoice",
        "Invoice 7",
    )
    assert event["source_ip"] == "203.0.113.9"
    assert (event["user_agent"], event["description"]) == ("curl/8", "changed the total")
    assert event["metadata"] == {"before": 10, "after": [1.5, "x", None, True]}


def test_it_converts_occurred_at_to_utc_and_truncates_to_microseconds():
    (event,), _ = events_parse(
        orjson.dumps(valid_event(occurred_at="2026-01-02T03:04:05.123456999+02:00"))
    )
    assert event["occurred_at"] == "2026-01-02T01:04:05.123456+00:00"
    (event,), _ = events_parse(orjson.dumps(valid_event(occurred_at="2026-01-02T03:04:05Z")))
    assert event["occurred_at"] == "2026-01-02T03:04:05.000000+00:00"


def test_an_events_id_derives_from_its_tenant_and_event_id():
    body = orjson.dumps([valid_event(event_id="evt-1"), valid_event(event_id="évt-😀")])

    first, _ = events_parse(body, tenant_id=7)
    again, _ = events_parse(body, tenant_id=7)
    other_tenant, _ = events_parse(body, tenant_id=8)

    assert [e["id"] for e in first] == [
        str(uuid.uuid5(EVENT_ID_NAMESPACE, "7:evt-1")),
        str(uuid.uuid5(EVENT_ID_NAMESPACE, "7:évt-😀")),
    ]
    assert [e["id"] for e in again] == [e["id"] for e in first]
    assert {e["id"] for e in other_tenant}.isdisjoint(e["id"] for e in first)
    assert event_uuid(7, "evt-1") == first[0]["id"]


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=1, max_value=2**31), st.text(min_size=1, max_size=128))
def test_event_uuid_is_uuid5_of_the_tenant_and_event_id(tenant_id, event_id):
    """Stored ids were made with it: it must never change."""
    expected = uuid.uuid5(EVENT_ID_NAMESPACE, f"{tenant_id}:{event_id}")
    assert event_uuid(tenant_id, event_id) == str(expected)


def test_an_event_without_event_id_gets_a_fresh_uuid_event_id_and_an_id_derived_from_it():
    events, _ = events_parse(orjson.dumps([valid_event(), valid_event()]), tenant_id=7)

    assert all(uuid.UUID(e["event_id"]).version == 4 for e in events)
    assert len({e["event_id"] for e in events}) == 2
    assert [e["id"] for e in events] == [event_uuid(7, e["event_id"]) for e in events]


def test_it_answers_a_repost_of_a_server_assigned_event_id_with_the_first_copy_s_id():
    """The worker keeps the first copy of an event_id: the later one's 202 must name it."""
    (auto,), _ = events_parse(orjson.dumps(valid_event()), tenant_id=7)
    (again,), _ = events_parse(orjson.dumps(valid_event(event_id=auto["event_id"])), tenant_id=7)

    assert again["event_id"] == auto["event_id"]
    assert again["id"] == auto["id"]


def test_without_a_tenant_every_event_still_gets_an_event_id_and_a_random_id():
    (auto, given), _ = events_parse(orjson.dumps([valid_event(), valid_event(event_id="e")]))

    assert uuid.UUID(auto["event_id"]).version == 4 and uuid.UUID(auto["id"]).version == 4
    assert given["event_id"] == "e" and uuid.UUID(given["id"]).version == 4
    assert event_normalize(valid_event(), tenant_id=7)["id"] != event_normalize(valid_event())["id"]
    normalized = event_normalize(valid_event(event_id="e"), tenant_id=7)
    assert normalized["id"] == event_uuid(7, "e")


def test_received_at_is_the_same_utc_instant_for_every_event_of_a_request():
    now = datetime(2026, 11, 29, 10, 0, 0, 7, tzinfo=UTC)
    events, is_list = events_parse(
        orjson.dumps([valid_event(occurred_at="2026-11-29T09:00:00Z")] * 2), now=now
    )
    assert is_list
    assert {e["received_at"] for e in events} == {"2026-11-29T10:00:00.000007+00:00"}
    assert len({e["id"] for e in events}) == 2


@pytest.mark.parametrize(
    ("given_ip", "stored"),
    [
        ("2001:0DB8:0000:0000:0000:0000:0000:0001", "2001:db8::1"),
        ("::ffff:1.2.3.4", "::ffff:1.2.3.4"),
        ("192.0.2.1", "192.0.2.1"),
    ],
)
def test_it_normalises_source_ip(given_ip, stored):
    (event,), _ = events_parse(orjson.dumps(valid_event(source_ip=given_ip)))
    assert event["source_ip"] == stored


@pytest.mark.django_db
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.ip_addresses(v=6) | st.ip_addresses(v=4) | st.sampled_from(["::1.2.3.4", "::1:0"]))
def test_the_normalised_source_ip_is_exactly_the_text_postgresql_returns(ip):
    """The ledger hashes the normalised text; verification re-reads it from the inet column."""
    (event,), _ = events_parse(orjson.dumps(valid_event(source_ip=str(ip))))
    with connection.cursor() as cursor:
        cursor.execute("SELECT host(%s::inet)", [str(ip)])
        (from_db,) = cursor.fetchone()
    assert event["source_ip"] == from_db
    assert ipaddress.ip_address(event["source_ip"]) == ipaddress.ip_address(str(ip))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("occurred_at", "2026-11-29T10:00:00"),  # no offset
        ("occurred_at", "yesterday"),
        ("occurred_at", "2026-11-29"),
        ("occurred_at", 1700000000),
        ("action", ""),
        ("action", "has space"),
        ("action", "a" * 129),
        ("action", "émoji"),
        ("action", "ok\n"),
        ("outcome", "maybe"),
        ("severity", "debug"),
        ("event_id", ""),
        ("event_id", "e" * 129),
        ("event_id", 7),
        ("source_ip", "999.1.1.1"),
        ("source_ip", "fe80::1%eth0"),
        ("source_ip", "example.com"),
        ("user_agent", "u" * 513),
        ("description", "d" * 2001),
        ("metadata", [1, 2]),
        ("metadata", "text"),
        ("metadata", {"n": 2**53}),
        ("metadata", {"n": -(2**53)}),
        ("metadata", {"deep": {"x": 2**64}}),
        ("metadata", {"big": "x" * (16 * 1024)}),
        ("target", "t-1"),
        ("actor", "user-42"),
    ],
)
def test_it_names_the_bad_field(field, value):
    assert field in errors_of(valid_event(**{field: value}))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("outcome", "meh", "Must be one of success, failure, unknown; got 'meh'."),
        ("severity", "debug", "Must be one of info, notice, warning, critical; got 'debug'."),
    ],
)
def test_a_value_outside_a_fields_choices_is_answered_with_the_choices(field, value, message):
    assert errors_of(valid_event(**{field: value})) == {field: [message]}


def test_it_refuses_an_occurred_at_more_than_five_minutes_ahead():
    ahead = (datetime.now(UTC) + timedelta(minutes=6)).isoformat()
    fields = errors_of(valid_event(occurred_at=ahead))
    assert fields == {"occurred_at": ["Must not be more than 5 minutes in the future."]}
    nearly = (datetime.now(UTC) + timedelta(minutes=4)).isoformat()
    assert events_parse(orjson.dumps(valid_event(occurred_at=nearly)))


@pytest.mark.parametrize(
    "value", ["2016-12-31T23:59:60Z", "2016-12-31t23:59:60.5+00:00", "2016-12-31T18:59:60-0500"]
)
def test_a_leap_second_is_told_what_to_send_instead(value):
    assert errors_of(valid_event(occurred_at=value)) == {
        "occurred_at": [
            "A leap second (:60) cannot be stored (PostgreSQL and Python have none): "
            "send :59.999999."
        ]
    }


@pytest.mark.parametrize(
    "value",
    [
        "2016-12-31T23:59:61Z",
        "2016-12-31T23:60:00Z",
        # Sub-microsecond digits are dropped, but only ASCII ones: Arabic-Indic, fullwidth.
        "2024-02-29T12:00:00.123456\u0663Z",
        "2024-02-29T12:00:00.123456\uff13\uff14Z",
    ],
)
def test_other_malformed_times_get_the_general_message(value):
    assert errors_of(valid_event(occurred_at=value)) == {
        "occurred_at": ["Must be an RFC 3339 timestamp with an offset, e.g. 2026-11-29T10:00:00Z."]
    }


REPEATED = "Given more than once in one object: readers differ on which value counts."


@pytest.mark.parametrize(
    ("before", "after", "errors"),
    [
        ('"action":', '"action":"x.y","action":', {"action": [REPEATED]}),
        ('"actor":{', '"actor":{"id":"a","id":"b",', {"actor": {"id": [REPEATED]}}),
        (
            '"metadata":{',
            '"metadata":{"l":[{"z":{"k":1,"k":1}}],',
            {"metadata": ["The key 'k' is given more than once in one object."]},
        ),
    ],
    ids=["top-level", "in-actor", "deep-in-metadata-with-the-same-value"],
)
def test_a_key_given_twice_in_one_object_is_refused(before, after, errors):
    body = orjson.dumps(valid_event(actor={"id": "a", "type": "user"}, metadata={"m": 1}))
    body = body.replace(before.encode(), after.encode(), 1)
    with pytest.raises(InvalidEvents) as caught:
        events_parse(body)
    assert caught.value.fields == errors


def test_a_repeated_key_among_a_hundred_thousand_is_found_without_quadratic_work():
    """Each key was counted over the whole object: 10^10 steps for this body, which fits the
    request limit (review). The metadata is refused for its size first; the repeat check runs
    on every body all the same."""
    from audit.validation import _repeated_keys

    keys = ",".join(f'"k{i}":0' for i in range(100_000))
    body = orjson.dumps(valid_event()).replace(
        b'"actor":', b'"metadata":{' + keys.encode() + b',"k7":1},"actor":', 1
    )
    assert _repeated_keys(body) == {
        "0": {"metadata": ["The key 'k7' is given more than once in one object."]}
    }
    with pytest.raises(InvalidEvents) as caught:
        events_parse(body)
    assert list(caught.value.fields) == ["metadata"]


def test_a_repeated_key_is_named_with_the_bodys_other_errors():
    body = orjson.dumps(valid_event(action="bad action", description="d"))
    body = body.replace(b'"description":', b'"description":"e","description":', 1)
    with pytest.raises(InvalidEvents) as caught:
        events_parse(body)
    assert set(caught.value.fields) == {"action", "description"}


@pytest.mark.parametrize("missing", ["occurred_at", "action", "actor"])
def test_it_requires(missing):
    event = valid_event()
    del event[missing]
    assert errors_of(event) == {missing: ["This field is required."]}


def test_it_names_nested_actor_and_target_fields():
    fields = errors_of(
        valid_event(
            actor={"type": "t" * 65, "name": "n" * 257, "role": "x"},
            target={"id": "i" * 257, "type": "t" * 65, "colour": "red"},
        )
    )
    assert set(fields["actor"]) == {"id", "type", "name", "role"}
    assert set(fields["target"]) == {"id", "type", "colour"}


def test_it_refuses_unknown_fields_by_name():
    fields = errors_of(valid_event(tenant="globex", extra=1))
    assert fields == {"tenant": ["Unknown field."], "extra": ["Unknown field."]}


@pytest.mark.parametrize(
    "event",
    [
        valid_event(description="a\u0000b"),
        valid_event(action="a.b", actor={"id": "x\u0000"}),
        valid_event(metadata={"k": ["ok", "bad\u0000"]}),
        valid_event(metadata={"bad\u0000key": 1}),
    ],
)
def test_it_refuses_nul_characters_anywhere_even_in_metadata(event):
    fields = errors_of(event)
    assert "NUL" in orjson.dumps(fields).decode()


@pytest.mark.parametrize(
    "number", [1e21, -1e21, 1.5e300, -1.5e300, 2.0**53, -(2.0**53), 1e16, 2**53, -(2**53)]
)
def test_it_refuses_numbers_beyond_the_safe_integer_range_in_metadata(number):
    """PostgreSQL's jsonb would give a float like 1e21 back as a huge integer: another type
    for clients, and an event that could not be posted again."""
    fields = errors_of(valid_event(metadata={"n": [{"x": number}]}))
    assert fields == {"metadata": [ANY_RANGE_MESSAGE]}
    detailed = errors_of(valid_event(action="not valid!", metadata={"n": number}))
    assert detailed["metadata"] == fields["metadata"]


@pytest.mark.parametrize(
    "number", [2.0**53 - 1, -(2.0**53 - 1), 1e15, 1.5, -0.0, 5e-324, 2**53 - 1, -(2**53 - 1)]
)
def test_it_accepts_numbers_within_the_safe_integer_range_in_metadata(number):
    (event,), _ = events_parse(dumps(valid_event(metadata={"n": number})))
    assert event["metadata"]["n"] == number
    assert type(event["metadata"]["n"]) is type(number)


def test_the_worker_refuses_a_float_beyond_the_safe_integer_range_too():
    from audit.services.event_rows import event_row
    from audit.tests.ingest_support import make_event

    with pytest.raises(ValueError, match=r"metadata: Numbers must be within ±\(2\^53-1\)"):
        event_row(tenant_id=1, event=make_event(metadata={"n": 1e21}))


def test_it_refuses_non_finite_numbers_in_metadata():
    body = b'{"occurred_at": "2026-01-01T00:00:00Z", "action": "a", "actor": {"id": "u"},'
    with pytest.raises(InvalidEvents) as caught:
        events_parse(body + b' "metadata": {"x": 1e999}}')
    assert "metadata" in caught.value.fields


@pytest.mark.parametrize("digits", [4300, 4301, 20000])
@pytest.mark.parametrize("sign", ["", "-"])
def test_it_names_metadata_for_an_integer_of_any_number_of_digits(digits, sign):
    """Beyond 4,300 digits Python's int() cannot read it: still the field's range error, not
    a parse_error naming no field."""
    body = dumps(valid_event(metadata={"n": 0})).replace(
        b'"n": 0', f'"n": {sign}{"9" * digits}'.encode()
    )
    with pytest.raises(InvalidEvents) as caught:
        events_parse(body)
    assert caught.value.fields == {"metadata": ["Integers must be within ±(2^53-1)."]}


def test_it_refuses_metadata_nested_too_deeply():
    deep: dict = {}
    node = deep
    for _ in range(40):
        node["n"] = {}
        node = node["n"]
    assert "metadata" in errors_of(valid_event(metadata=deep))


def test_it_accepts_metadata_of_exactly_the_limit():
    padding = 16 * 1024 - len(orjson.dumps({"p": ""}))
    event = valid_event(metadata={"p": "x" * padding})
    assert events_parse(orjson.dumps(event))
    assert "metadata" in errors_of(valid_event(metadata={"p": "x" * (padding + 1)}))


def _nested(kinds: str, innermost: tuple = ()) -> dict:
    """Containers nested in the order of ``kinds`` (``o`` object, ``a`` array; the first,
    the metadata itself, an object), the last one holding ``innermost`` (empty: nothing)."""
    assert kinds[0] == "o"
    if kinds[-1] == "o":
        node: Any = {f"k{i}": value for i, value in enumerate(innermost)}
    else:
        node = list(innermost)
    for kind in reversed(kinds[:-1]):
        node = {"n": node} if kind == "o" else [node]
    return node


_DEPTH_SHAPES = {
    "objects": lambda n: "o" * n,
    "arrays": lambda n: "o" + "a" * (n - 1),
    "alternating": lambda n: ("oa" * n)[:n],
    "objects then one array": lambda n: "o" * (n - 1) + "a",
    "arrays then one object": lambda n: "o" + "a" * (n - 2) + "o",
}
_INNERMOST = {
    "empty": (),
    "an integer": (1,),
    "a string": ("s",),
    "null and a float": (None, 2.5),
}


@pytest.mark.parametrize("shape", _DEPTH_SHAPES)
@pytest.mark.parametrize("innermost", _INNERMOST)
@pytest.mark.parametrize(("levels", "accepted"), [(32, True), (33, False)])
def test_metadata_may_hold_32_nested_containers_and_not_33(shape, innermost, levels, accepted):
    """The limit counts objects and arrays, the metadata object being level 1; values inside
    the 32nd container are allowed. Every checker agrees: the fast path, the detailed path
    (taken when another field is bad), ``metadata_check`` and the worker's ``event_row``."""
    from audit.services.event_rows import event_row
    from audit.tests.ingest_support import make_event
    from audit.validation import MAX_METADATA_DEPTH, FieldError, metadata_check

    assert MAX_METADATA_DEPTH == 32
    metadata = _nested(_DEPTH_SHAPES[shape](levels), _INNERMOST[innermost])
    refusal = ["Nested deeper than 32 levels (objects and arrays)."]

    if accepted:
        (event,), _ = events_parse(orjson.dumps(valid_event(metadata=metadata)))
        assert event["metadata"] == metadata
        assert metadata_check(metadata) is metadata
        event_row(tenant_id=1, event=make_event(metadata=metadata))
    else:
        assert errors_of(valid_event(metadata=metadata)) == {"metadata": refusal}
        with pytest.raises(FieldError, match="deeper"):
            metadata_check(metadata)
        with pytest.raises(ValueError, match="metadata: Nested deeper than 32 levels"):
            event_row(tenant_id=1, event=make_event(metadata=metadata))
    detailed = errors_of(valid_event(action="not valid!", metadata=metadata))
    assert detailed.get("metadata") == (None if accepted else refusal)


def test_31_objects_around_a_non_empty_array_are_32_levels_and_accepted():
    metadata: Any = {"a": [1]}
    for _ in range(30):
        metadata = {"n": metadata}  # 31 objects, then the array: 32 containers
    (event,), _ = events_parse(orjson.dumps(valid_event(metadata=metadata)))
    assert event["metadata"] == metadata
    assert "metadata" in errors_of(valid_event(metadata={"n": metadata}))  # 33


def test_the_size_limit_counts_metadata_as_stored_not_as_sent():
    body = b'{"occurred_at": "2026-01-01T00:00:00Z", "action": "a", "actor": {"id": "u"},'
    # 3 bytes sent, 8 stored ("100000.0"): 3,000 of them fit the limit as sent, not stored.
    grows = b'{"x": [' + b",".join([b"1e5"] * 3000) + b"]}"
    assert len(grows) < 16 * 1024
    with pytest.raises(InvalidEvents) as caught:
        events_parse(body + b' "metadata": ' + grows + b"}")
    assert "bytes" in str(caught.value.fields["metadata"])
    # Whitespace and escapes are not stored: over the limit as sent, well under it stored.
    shrinks = b'{"x": "' + b"\\u0041" * 3000 + b'"' + b" " * 8000 + b"}"
    assert len(shrinks) > 16 * 1024
    (event,), _ = events_parse(body + b' "metadata": ' + shrinks + b"}")
    assert event["metadata"] == {"x": "A" * 3000}


def test_metadata_full_of_ids_and_hashes_passes_untouched():
    metadata = {
        "request_id": "3e4b9c2d-9e1f-4a7e-8d2c-1e5f6a7b8c9d",
        "sha": "1e5f" * 16,
        "n": [1, 2.5, -3],
    }
    (event,), _ = events_parse(orjson.dumps(valid_event(metadata=metadata)))
    assert event["metadata"] == metadata


def test_it_names_every_bad_item_of_a_list_by_index_and_only_those():
    body = [
        valid_event(),
        valid_event(occurred_at="not a time", severity="loud"),
        valid_event(),
        valid_event(actor={}),
    ]
    fields = errors_of(body)
    assert set(fields) == {"1", "3"}
    assert set(fields["1"]) == {"occurred_at", "severity"}
    assert fields["3"] == {"actor": {"id": ["This field is required."]}}


def test_it_refuses_a_repeated_event_id_in_one_request_at_the_later_index():
    fields = errors_of(
        [valid_event(event_id="a"), valid_event(event_id="b"), valid_event(event_id="a")]
    )
    assert fields == {"2": {"event_id": ["Duplicate of item 0 in this request."]}}


def test_it_refuses_an_empty_list_a_scalar_and_a_list_over_the_limit():
    assert "non_field_errors" in errors_of([])
    assert "non_field_errors" in errors_of(42)
    assert "non_field_errors" in errors_of([5])["0"]
    too_many = [valid_event()] * (MAX_EVENTS_PER_REQUEST + 1)
    assert "non_field_errors" in errors_of(too_many)
    events, _ = events_parse(orjson.dumps([valid_event()] * MAX_EVENTS_PER_REQUEST))
    assert len(events) == MAX_EVENTS_PER_REQUEST


@pytest.mark.parametrize("body", [b"", b"{", b"[1,", b"nope", b'{"a": NaN}', b"\xff\xfe"])
def test_it_reports_malformed_json_as_such(body):
    with pytest.raises(InvalidJSON):
        events_parse(body)


def parse_error_of(body: bytes) -> str:
    with pytest.raises(InvalidJSON) as caught:
        events_parse(body)
    return str(caught.value)


@pytest.mark.parametrize("body", [b"", b" ", b"\r\n\t "])
def test_an_empty_body_is_called_empty_not_truncated(body):
    assert parse_error_of(body) == "Malformed JSON: the request body is empty."


@pytest.mark.parametrize("mark", [b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff"])
def test_a_byte_order_mark_is_named_as_such(mark):
    message = parse_error_of(mark + orjson.dumps(valid_event()))
    assert "byte-order mark" in message and "not allowed" in message
    assert "must start with the JSON text" in message


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b'{"action": "caf\xe9"}', "byte 15 (0xe9) is not valid UTF-8"),
        (b'{"action": "\xc3"}', "byte 12 (0xc3) is not valid UTF-8"),  # a truncated sequence
        ('{"a": 1}'.encode("utf-16-le"), "byte 1 is a NUL byte, as in UTF-16 or UTF-32 text"),
        ('{"a": 1}'.encode("utf-32-be"), "byte 0 is a NUL byte, as in UTF-16 or UTF-32 text"),
        (b'{"a": "\x00\xff"}', "byte 7 is a NUL byte, as in UTF-16 or UTF-32 text"),
        (b'{"a": "\xff\x00"}', "byte 7 (0xff) is not valid UTF-8"),  # the first problem
    ],
)
def test_a_body_in_another_encoding_than_utf8_is_told_so(body, why):
    assert parse_error_of(body) == (
        f"Malformed JSON: the request body must be JSON encoded in UTF-8; {why}."
    )


def test_valid_utf8_with_a_syntax_error_keeps_the_decoder_s_message():
    assert "UTF-8" not in parse_error_of('{"action": "café",}'.encode())


@pytest.mark.parametrize(
    ("string", "where"),
    [
        (b"\\ud800", b"\\ud800"),
        (b"ok \\uDBFF then", b"\\uDBFF"),
        (b"\\\\\\ud800", b"\\ud800"),  # an escaped backslash, then the surrogate
        (b"\\ud800\\u0041", b"\\ud800"),  # not followed by a low half
        (b"\\ud800\\ud800", b"\\ud800"),
        (b"\\ud83d\\ude00\\udc00", None),  # a pair, then a low half alone
        (b"\\udc00", None),
    ],
)
def test_an_unpaired_surrogate_is_called_an_invalid_string_not_truncated(string, where):
    body = b'{"occurred_at": "2026-01-01T00:00:00Z", "action": "a", "actor": {"id": "'
    message = parse_error_of(body + string + b'"}}')
    assert message.startswith("Malformed JSON: invalid string: unpaired UTF-16 surrogate")
    assert "truncated" not in message
    if where is not None:  # the escape is named, with its offset in the body
        assert f"{where.decode()} (byte {len(body) + string.index(where)})" in message


def test_a_truly_truncated_body_is_still_called_truncated():
    assert "truncated" in parse_error_of(b'{"action": ')
    # The text "\ud800" (an escaped backslash) is no surrogate.
    assert "truncated" in parse_error_of(b'{"actor": {"id": "\\\\ud800')


def test_a_paired_surrogate_and_an_escaped_backslash_are_plain_text():
    actor = b'{"id": "\\ud83d\\ude00 \\\\ud800"}'
    body = b'{"occurred_at": "2026-01-01T00:00:00Z", "action": "a", "actor": ' + actor + b"}"
    (event,), _ = events_parse(body)
    assert event["actor_id"] == "\U0001f600 \\ud800"


def test_a_lone_surrogate_is_refused_not_passed_to_postgresql():
    body = b'{"occurred_at": "2026-01-01T00:00:00Z", "action": "a", "actor": {"id": "\\ud800"}}'
    with pytest.raises((InvalidJSON, InvalidEvents)):
        events_parse(body)


def test_event_normalize_validates_a_python_dict():
    event = event_normalize(valid_event(description="hello"))
    assert event["description"] == "hello"
    with pytest.raises(InvalidEvents):
        event_normalize(valid_event(action="not valid!"))


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
field_values = {
    "event_id": st.text(max_size=140) | json_values,
    "occurred_at": st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat())
    | json_values,
    "action": st.from_regex(r"\A[A-Za-z0-9_.:-]{0,130}\Z") | json_values,
    "outcome": st.sampled_from(["success", "failure", "unknown", "x"]) | json_values,
    "severity": st.sampled_from(["info", "notice", "warning", "critical", "y"]),
    "actor": st.fixed_dictionaries({}, optional={"id": json_values, "type": json_values})
    | json_values,
    "target": st.fixed_dictionaries({}, optional={"id": json_values, "name": json_values}),
    "source_ip": st.ip_addresses().map(str) | json_values,
    "user_agent": st.text(max_size=600),
    "description": st.text(max_size=50) | json_values,
    "metadata": json_values,
    "unknown": json_values,
}
random_events = st.fixed_dictionaries({}, optional=field_values)


@settings(max_examples=400, deadline=None)
@given(st.one_of(random_events, st.lists(random_events, max_size=5), json_values))
def test_random_input_is_either_accepted_in_contract_form_or_refused_with_named_fields(body):
    try:
        events, _ = events_parse(dumps(body))
    except InvalidEvents as exc:
        assert exc.fields and isinstance(exc.fields, dict)
        return
    for event in events:
        assert set(event) == CONTRACT_KEYS
        assert event["occurred_at"].endswith("+00:00")
        assert len(orjson.dumps(event["metadata"])) <= 16 * 1024


def test_a_deeply_nested_body_is_malformed_json_not_a_crash():
    with pytest.raises(InvalidJSON):
        events_parse(b"[" * 100_000 + b"]" * 100_000)
    body = b'{"occurred_at": "2026-01-01T00:00:00Z", "action": "a", "actor": {"id": "u"},'
    with pytest.raises((InvalidJSON, InvalidEvents)):
        events_parse(body + b'"metadata":' + b"[" * 100_000 + b"]" * 100_000 + b"}")


def test_ids_are_random_uuid4_and_a_forked_child_never_repeats_its_parent_s(monkeypatch):
    from audit import validation

    ids = {validation.new_id() for _ in range(1000)}
    assert len(ids) == 1000 and all(uuid.UUID(i).version == 4 for i in ids)
    source = validation.new_id
    if source.offset >= len(source.pool):
        # Refilled: the parent's pool must have an unused id left. (">= len - 16" used the
        # last one up when exactly one was left: a flaky ValueError, 1 run in 256.)
        validation.new_id()
    parent_next = str(uuid.UUID(bytes=source.pool[source.offset : source.offset + 16], version=4))
    monkeypatch.setattr(validation.os, "getpid", lambda: -1)  # as if we were the child
    assert validation.new_id() != parent_next


metadata_leaves = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**60), max_value=2**60)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.characters(codec="utf-8"), max_size=30)
    | st.sampled_from(["a\x00b", "\x00"])
)
metadata_objects = st.dictionaries(
    st.text(max_size=6),
    st.recursive(
        metadata_leaves,
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=4), c, max_size=3),
        max_leaves=40,
    ),
    max_size=5,
)


@settings(max_examples=500, deadline=None)
@given(metadata_objects, st.sampled_from([None, " ", "\n  "]))
def test_the_metadata_fast_path_agrees_with_the_full_check(value, indent):
    """The request path (size taken from the bytes sent) never lets through what the full
    check would refuse, nor refuses what it accepts."""
    import msgspec

    from audit.validation import FieldError, _metadata_fast, metadata_check

    raw = json.dumps(value, separators=(",", ":") if indent is None else None).encode()
    try:
        expected = metadata_check(json.loads(raw))
    except FieldError:
        expected = FieldError
    try:
        got = _metadata_fast(msgspec.Raw(raw))
    except FieldError:
        got = FieldError
    assert got == expected


@pytest.mark.parametrize(
    ("value", "canonical"),
    [
        ("203.0.113.9", True),
        ("0.0.0.0", True),
        ("203.000.113.9", False),
        ("1.2.3", False),
        ("::ffff:1.2.3.4", False),
        ("2001:db8::1", False),
        ("", False),
        ("1.2.3.4 ", False),
    ],
)
def test_the_ipv4_shortcut_takes_only_addresses_already_as_stored(value, canonical):
    from audit.ledger.canonical import ipv4_is_canonical

    assert ipv4_is_canonical(value) is canonical


class _Text(str):
    pass


class _Number(int):
    pass


class _Real(float):
    pass


class _Mapping(dict):
    pass


@pytest.mark.parametrize(
    ("metadata", "refusal"),
    [
        ({"k": _Text("a\x00b")}, "NUL"),
        ({"k": [_Number(2**53)]}, "Integers"),
        ({"k": _Mapping(deep=_Real("inf"))}, "finite"),
        ({"k": _Mapping(n=_Number(1), s=_Text("ok"), r=_Real(1.5))}, None),
    ],
)
def test_subclasses_of_json_types_are_checked_as_their_base_type(metadata, refusal):
    """Python callers (not the JSON decoders) may pass subclasses: the same rules hold, and
    such metadata is never called plain, so the ledger checks it itself."""
    from audit.validation import FieldError, _metadata_walk

    if refusal is None:
        assert _metadata_walk(metadata) is False
    else:
        with pytest.raises(FieldError, match=refusal):
            _metadata_walk(metadata)


def test_null_for_any_optional_field_means_absent():
    now = datetime(2026, 11, 29, 10, tzinfo=UTC)
    explicit_nulls = valid_event(
        occurred_at="2026-11-29T09:00:00Z",
        event_id=None,
        outcome=None,
        severity=None,
        actor={"id": "a", "type": None, "name": None},
        target={"id": None, "type": None, "name": None},
        source_ip=None,
        user_agent=None,
        description=None,
        metadata=None,
    )
    absent = valid_event(occurred_at="2026-11-29T09:00:00Z", actor={"id": "a"})
    (with_nulls,), _ = events_parse(orjson.dumps(explicit_nulls), now=now, tenant_id=1)
    (absent,), _ = events_parse(orjson.dumps(absent), now=now, tenant_id=1)

    differing = {"id", "event_id"}  # both fresh UUIDs
    assert {k: v for k, v in with_nulls.items() if k not in differing} == {
        k: v for k, v in absent.items() if k not in differing
    }
    assert (with_nulls["outcome"], with_nulls["severity"]) == ("success", "info")
    assert (with_nulls["actor_type"], with_nulls["actor_name"]) == ("user", "")


def test_null_is_not_accepted_for_a_required_field():
    fields = errors_of(valid_event(action=None, actor={"id": None}))
    assert set(fields) == {"action", "actor"} and set(fields["actor"]) == {"id"}


def test_a_repeated_event_id_is_named_with_the_other_errors_in_one_answer():
    """Not in a second round, once the other errors are fixed."""
    fields = errors_of(
        [
            valid_event(event_id="a"),
            valid_event(event_id="b", severity="loud"),
            valid_event(event_id="a"),
            valid_event(event_id="b", colour="red"),
        ]
    )
    assert fields == {
        "1": {"severity": fields["1"]["severity"]},
        "2": {"event_id": ["Duplicate of item 0 in this request."]},
        "3": {"colour": ["Unknown field."], "event_id": ["Duplicate of item 1 in this request."]},
    }
