"""POST /api/v1/audit-events against the real RabbitMQ (this vhost) and PostgreSQL."""

import gzip
import json
import uuid
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import RefreshToken

from accounts.models import SYSTEM_TENANT_SLUG, Tenant
from audit.models import OutboxMessage
from audit.tests.ingest_api_support import (
    URL,
    ingest_messages,
    post_json,
    valid_event,
)
from audit.validation import event_uuid

pytestmark = pytest.mark.usefixtures("clean_broker")


@pytest.fixture
def ingest_client(key_client):
    return key_client(scopes=["ingest"])


def test_it_accepts_one_event_and_publishes_it_in_the_worker_contract(ingest_client, tenant):
    event = valid_event(
        event_id="evt-1",
        occurred_at="2026-11-29T11:00:00.5+01:00",
        target={"id": "inv-7", "type": "invoice"},
        source_ip="2001:DB8::0:1",
        metadata={"total": 12},
    )
    response = post_json(ingest_client, event, HTTP_X_REQUEST_ID="req-abc")
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["accepted"] == 1 and len(body["ids"]) == 1

    (message,) = ingest_messages(expect=1)
    assert message["headers"]["task"] == "audit.ingest_batch"
    assert message["content_type"] == "application/json"
    assert message["properties"]["delivery_mode"] == 2
    assert message["args"] == []
    kwargs = message["kwargs"]
    assert kwargs["tenant_id"] == tenant.pk and kwargs["request_id"] == "req-abc"
    assert kwargs["submitted_by"].startswith("api_key:")  # the credential, set by the server
    (published,) = kwargs["events"]
    assert published["id"] == body["ids"][0]
    assert published["event_id"] == "evt-1"
    assert published["occurred_at"] == "2026-11-29T10:00:00.500000+00:00"
    assert (published["target_id"], published["target_type"], published["target_name"]) == (
        "inv-7",
        "invoice",
        "",
    )
    assert published["source_ip"] == "2001:db8::1"
    assert published["metadata"] == {"total": 12}
    assert not OutboxMessage.objects.exists()  # no database write while the broker is up


def test_it_accepts_a_batch_as_one_message_with_ids_in_request_order(ingest_client):
    events = [valid_event(event_id=f"e-{i}") for i in range(250)]
    response = post_json(ingest_client, events)
    assert response.status_code == 202
    ids = response.json()["ids"]
    assert response.json()["accepted"] == 250 and len(set(ids)) == 250
    (message,) = ingest_messages(expect=1)
    published = message["kwargs"]["events"]
    assert [e["id"] for e in published] == ids
    assert [e["event_id"] for e in published] == [f"e-{i}" for i in range(250)]


def test_a_user_with_the_ingest_role_may_post(user_client, owner):
    response = post_json(user_client(owner), valid_event())
    assert response.status_code == 202


def test_it_answers_401_without_credentials(api_client, db):
    assert post_json(api_client, valid_event()).status_code == 401


def test_it_answers_401_for_an_unknown_key(api_client, db):
    api_client.credentials(HTTP_AUTHORIZATION="Api-Key nope.nope")
    assert post_json(api_client, valid_event()).status_code == 401


def test_it_answers_403_for_a_read_only_key(key_client):
    response = post_json(key_client(scopes=["read"]), valid_event())
    assert response.status_code == 403
    assert response.json()["error"]["code"]


def test_it_answers_403_for_an_auditor(user_client, teammate):
    assert post_json(user_client(teammate), valid_event()).status_code == 403


def test_events_belong_to_the_key_s_tenant_whatever_the_body_says(key_client, other_tenant):
    client = key_client(scopes=["ingest"], for_tenant=other_tenant)
    assert post_json(client, valid_event()).status_code == 202
    (message,) = ingest_messages(expect=1)
    assert message["kwargs"]["tenant_id"] == other_tenant.pk
    # and a "tenant" field in the event is an unknown field, not a way to pick one
    response = post_json(client, valid_event(tenant="acme"))
    assert response.status_code == 400
    assert "tenant" in response.json()["error"]["fields"]


def test_a_key_naming_another_tenant_in_the_query_is_refused_not_redirected(
    key_client, tenant, other_tenant
):
    """As for reads: another tenant's slug is a 403, never silently the key's own tenant."""
    client = key_client(scopes=["ingest"])
    response = client.generic(
        "POST",
        f"{URL}?tenant={other_tenant.slug}",
        orjson.dumps(valid_event()),
        content_type="application/json",
    )
    assert response.status_code == 403
    own = client.generic(
        "POST",
        f"{URL}?tenant={tenant.slug}",
        orjson.dumps(valid_event()),
        content_type="application/json",
    )
    assert own.status_code == 202
    assert [m["kwargs"]["tenant_id"] for m in ingest_messages(expect=1)] == [tenant.pk]


def test_a_superuser_names_the_tenant_in_the_query(user_client, superuser, tenant):
    client = user_client(superuser)
    response = client.generic(
        "POST",
        f"{URL}?tenant={tenant.slug}",
        orjson.dumps(valid_event()),
        content_type="application/json",
    )
    assert response.status_code == 202
    assert ingest_messages(expect=1)[0]["kwargs"]["tenant_id"] == tenant.pk
    response = post_json(client, valid_event())
    assert response.status_code == 400
    assert "tenant" in response.json()["error"]["fields"]


def test_not_even_a_superuser_posts_into_the_system_tenant(user_client, superuser):
    Tenant.objects.create(slug=SYSTEM_TENANT_SLUG, name="System")
    response = user_client(superuser).generic(
        "POST",
        f"{URL}?tenant={SYSTEM_TENANT_SLUG}",
        orjson.dumps(valid_event()),
        content_type="application/json",
    )

    assert response.status_code == 403
    assert "TraceLedger's own records" in response.json()["error"]["message"]
    assert ingest_messages(expect=1, timeout=0.5) == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("event_id", "e" * 129),
        ("event_id", ""),
        ("occurred_at", "2026-11-29T10:00:00"),
        ("occurred_at", "soon"),
        ("action", "has spaces"),
        ("action", "a" * 129),
        ("outcome", "maybe"),
        ("severity", "debug"),
        ("actor", {"name": "no id"}),
        ("actor", {"id": "x" * 257}),
        ("actor", {"id": "a", "type": "t" * 65}),
        ("target", {"id": "x" * 257}),
        ("target", {"type": "t" * 65}),
        ("target", {"name": "n" * 257}),
        ("source_ip", "300.1.1.1"),
        ("user_agent", "u" * 513),
        ("description", "d" * 2001),
        ("metadata", ["not", "an", "object"]),
        ("metadata", {"big": "x" * 17000}),
        ("metadata", {"n": 2**53}),
        ("metadata", {"s": "nul\u0000"}),
        ("description", "nul\u0000"),
        ("unexpected", 1),
    ],
)
def test_every_rule_of_the_event_gives_a_400_naming_the_field(ingest_client, field, value):
    response = post_json(ingest_client, json.dumps(valid_event(**{field: value})).encode())
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert field in error["fields"]


NOT_STRINGS = [7, True, [], {}]


@pytest.mark.parametrize("value", NOT_STRINGS, ids=repr)
@pytest.mark.parametrize(
    "field",
    [
        "event_id",
        "occurred_at",
        "action",
        "outcome",
        "severity",
        "source_ip",
        "user_agent",
        "description",
    ],
)
def test_a_field_that_is_not_a_string_gives_a_400_naming_it_alone(ingest_client, field, value):
    response = post_json(ingest_client, valid_event(**{field: value}))
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert list(error["fields"]) == [field]
    assert error["fields"][field][0].startswith("Must be a string"), error["fields"]


@pytest.mark.parametrize("value", NOT_STRINGS, ids=repr)
@pytest.mark.parametrize(
    ("parent", "field"),
    [
        ("actor", "id"),
        ("actor", "type"),
        ("actor", "name"),
        ("target", "id"),
        ("target", "type"),
        ("target", "name"),
    ],
)
def test_an_actor_or_target_field_that_is_not_a_string_gives_a_400_naming_it(
    ingest_client, parent, field, value
):
    event = valid_event()
    event[parent] = {**event.get(parent, {"id": "inv-7"}), field: value}
    response = post_json(ingest_client, event)
    assert response.status_code == 400, response.content
    fields = response.json()["error"]["fields"]
    assert list(fields) == [parent]
    assert list(fields[parent]) == [field]
    assert fields[parent][field][0].startswith("Must be a string"), fields


@pytest.mark.parametrize("field", ["id", "type"])
def test_an_empty_actor_id_or_type_gives_a_400_naming_it(ingest_client, field):
    # An empty actor type is not "no type": stored as the default "user" it would claim an
    # identity the client did not send.
    response = post_json(ingest_client, valid_event(actor={"id": "user-42", field: ""}))
    assert response.status_code == 400, response.content
    assert response.json()["error"]["fields"] == {"actor": {field: ["Must not be empty."]}}
    assert ingest_messages(expect=1, timeout=0.5) == []


def test_it_refuses_occurred_at_more_than_five_minutes_in_the_future(ingest_client):
    ahead = (datetime.now(UTC) + timedelta(minutes=6)).isoformat()
    response = post_json(ingest_client, valid_event(occurred_at=ahead))
    assert response.status_code == 400
    assert "future" in response.json()["error"]["fields"]["occurred_at"][0]


@pytest.mark.parametrize("missing", ["occurred_at", "action", "actor"])
def test_a_missing_required_field_is_named(ingest_client, missing):
    event = valid_event()
    del event[missing]
    response = post_json(ingest_client, event)
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {missing: ["This field is required."]}


def test_a_bad_item_of_a_list_is_named_by_index_and_nothing_is_published(ingest_client):
    events = [valid_event(), valid_event(), valid_event(occurred_at="later"), valid_event()]
    response = post_json(ingest_client, events)
    assert response.status_code == 400
    fields = response.json()["error"]["fields"]
    assert list(fields) == ["2"] and "occurred_at" in fields["2"]
    assert ingest_messages(expect=1, timeout=0.5) == []


def test_a_repeated_event_id_in_one_request_is_refused_at_its_index(ingest_client):
    events = [valid_event(event_id="same"), valid_event(event_id="same")]
    response = post_json(ingest_client, events)
    assert response.status_code == 400
    assert "event_id" in response.json()["error"]["fields"]["1"]


def test_a_key_given_twice_in_an_object_is_refused_naming_the_field(ingest_client):
    one = orjson.dumps(valid_event(description="shown")).decode()
    # The later "description" would be stored; a proxy logging the request may show the first.
    twice = one.replace('"description":', '"description":"hidden","description":', 1)
    nested = orjson.dumps(valid_event(metadata={"k": 1})).decode().replace('"k":1', '"k":1,"k":2')
    body = f"[{one},{twice},{nested}]".encode()
    response = post_json(ingest_client, body)
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {
        "1": {
            "description": [
                "Given more than once in one object: readers differ on which value counts."
            ]
        },
        "2": {"metadata": ["The key 'k' is given more than once in one object."]},
    }
    assert ingest_messages(expect=1, timeout=0.5) == []


def test_more_than_1000_events_is_a_400(ingest_client):
    response = post_json(ingest_client, [valid_event()] * 1001)
    assert response.status_code == 400
    assert "1000" in json.dumps(response.json())


def test_an_empty_list_is_a_400(ingest_client):
    assert post_json(ingest_client, []).status_code == 400


def test_malformed_json_is_a_400_with_a_parse_message(ingest_client):
    response = post_json(ingest_client, b'{"action": ')
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "parse_error"


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", ""])
def test_a_body_that_is_not_json_is_a_415(ingest_client, content_type):
    response = ingest_client.generic(
        "POST", URL, orjson.dumps(valid_event()), content_type=content_type
    )
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"
    assert "`Content-Type: application/json`" in response.json()["error"]["message"]


@pytest.mark.parametrize("charset", ["utf-8", "UTF-8", "utf8", '"utf-8"'])
def test_json_with_a_utf8_charset_parameter_is_accepted(ingest_client, charset):
    response = ingest_client.generic(
        "POST",
        URL,
        orjson.dumps(valid_event()),
        content_type=f"application/json; charset={charset}",
    )
    assert response.status_code == 202


@pytest.mark.parametrize("charset", ["iso-8859-1", "latin-1", "utf-16", "nonsense"])
def test_json_labelled_with_another_charset_is_a_415_not_read_as_utf8(ingest_client, charset):
    # These bytes are "é" in UTF-8 and "Ã©" in Latin-1: neither reading may be guessed.
    body = orjson.dumps(valid_event(description="é"))
    response = ingest_client.generic(
        "POST", URL, body, content_type=f"application/json; charset={charset}"
    )
    assert response.status_code == 415
    error = response.json()["error"]
    assert error["code"] == "unsupported_media_type"
    assert f"Unsupported charset {charset!r}: JSON request bodies are UTF-8" in error["message"]
    assert not ingest_messages(expect=1, timeout=0.2)


@pytest.mark.parametrize("coding", ["gzip", "br", "deflate", "x-gzip", "gzip, identity"])
@pytest.mark.parametrize("compressed", [True, False])
def test_a_compressed_body_is_a_415_naming_content_encoding(ingest_client, coding, compressed):
    body = orjson.dumps(valid_event())
    # Compressed or only claiming to be: either way the server must not guess.
    response = post_json(
        ingest_client, gzip.compress(body) if compressed else body, HTTP_CONTENT_ENCODING=coding
    )
    assert response.status_code == 415
    error = response.json()["error"]
    assert error["code"] == "unsupported_media_type"
    assert f"Unsupported Content-Encoding {coding!r}" in error["message"]
    assert "send the request body uncompressed" in error["message"]
    assert response["Accept-Encoding"] == "identity"
    assert not ingest_messages(expect=1, timeout=0.2)


@pytest.mark.parametrize("coding", ["identity", "IDENTITY", ""])
def test_content_encoding_identity_is_the_plain_body(ingest_client, coding):
    response = post_json(ingest_client, valid_event(), HTTP_CONTENT_ENCODING=coding)
    assert response.status_code == 202


def test_a_body_over_the_limit_is_a_413(ingest_client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2048
    events = [valid_event(description="x" * 500) for _ in range(5)]
    response = post_json(ingest_client, events)
    assert response.status_code == 413
    assert response.json()["error"] == {
        "code": "too_large",
        "message": "The request body is too large: the limit is 2,048 bytes (about 0.002 MiB).",
    }


def test_without_event_id_the_server_assigns_one_and_derives_the_id_from_it(ingest_client, tenant):
    response = post_json(ingest_client, [valid_event(), valid_event()])
    ids = response.json()["ids"]
    (message,) = ingest_messages(expect=1)
    published = message["kwargs"]["events"]
    assert [e["id"] for e in published] == ids
    assert all(uuid.UUID(e["event_id"]).version == 4 for e in published)
    assert ids == [event_uuid(tenant.pk, e["event_id"]) for e in published]


def test_an_event_sent_with_a_server_assigned_event_id_gets_the_same_id(ingest_client):
    """The worker keeps the first copy of an event_id: the later 202 must name its id."""
    first = post_json(ingest_client, valid_event())
    (published,) = ingest_messages(expect=1)[0]["kwargs"]["events"]
    again = post_json(ingest_client, valid_event(event_id=published["event_id"]))
    assert again.status_code == 202
    assert again.json()["ids"] == first.json()["ids"]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"", "Malformed JSON: the request body is empty."),
        (b"\xef\xbb\xbf" + orjson.dumps(valid_event()), "byte-order mark (BOM), which is not"),
        (b'{"action": "a", "actor": {"id": "\\ud800"}}', "unpaired UTF-16 surrogate \\ud800"),
    ],
)
def test_a_malformed_body_is_a_parse_error_that_says_what_is_wrong(ingest_client, body, says):
    response = post_json(ingest_client, body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "parse_error"
    assert says in error["message"] and "truncated" not in error["message"]
    assert "invalid character" not in error["message"]


@pytest.mark.parametrize(
    ("charset", "says"),
    [
        ("latin-1", "byte {e_acute} (0xe9) is not valid UTF-8"),
        ("utf-16-le", "byte 1 is a NUL byte, as in UTF-16 or UTF-32 text"),
        ("utf-16-be", "byte 0 is a NUL byte, as in UTF-16 or UTF-32 text"),
        ("utf-32-le", "byte 1 is a NUL byte, as in UTF-16 or UTF-32 text"),
    ],
)
def test_a_body_that_is_not_utf8_is_told_to_be_utf8_json(ingest_client, charset, says):
    # Labelled as JSON without a charset (a charset other than UTF-8 is a 415 of its own).
    body = json.dumps(valid_event(description="café"), ensure_ascii=False).encode(charset)
    response = ingest_client.generic("POST", URL, body, content_type="application/json")
    says = says.format(e_acute=body.find("é".encode("latin-1")))
    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "parse_error",
        "message": f"Malformed JSON: the request body must be JSON encoded in UTF-8; {says}.",
    }


@pytest.mark.parametrize("number", [1e21, 1.5e300, -(2.0**53)])
def test_a_float_beyond_the_safe_integer_range_is_refused_in_metadata(ingest_client, number):
    response = post_json(ingest_client, valid_event(metadata={"n": number}))
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"metadata": ["Numbers must be within ±(2^53-1)."]}


json_leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
json_values = st.recursive(
    json_leaves,
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
    max_leaves=8,
)
event_like = st.fixed_dictionaries(
    {},
    optional={
        "occurred_at": st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat())
        | json_values,
        "action": st.from_regex(r"\A[A-Za-z0-9_.:-]{0,130}\Z") | json_values,
        "actor": st.fixed_dictionaries({}, optional={"id": json_values, "type": json_values})
        | json_values,
        "target": st.fixed_dictionaries({}, optional={"id": json_values}) | json_values,
        "source_ip": st.ip_addresses().map(str) | json_values,
        "event_id": json_values,
        "metadata": json_values,
        "severity": st.sampled_from(["info", "x"]) | json_values,
        "zzz": json_values,
    },
)
raw_bodies = st.one_of(
    st.binary(max_size=64),
    st.sampled_from(
        [b'{"actor": {"id": "\\ud800"}}', b"[" * 5000, b'{"metadata": 1e999}', b"\x00", b"null"]
    ),
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    body=st.one_of(
        event_like.map(lambda b: json.dumps(b).encode()),
        st.lists(event_like, max_size=3).map(lambda b: json.dumps(b).encode()),
        json_values.map(lambda b: json.dumps(b).encode()),
        raw_bodies,
    )
)
def test_random_bodies_never_give_a_server_error(ingest_client, body):
    response = post_json(ingest_client, body)
    assert response.status_code in (202, 400), (body, response.status_code, response.content)
    if response.status_code == 400:
        assert response.json()["error"]["message"]


def test_while_postgresql_is_down_only_api_keys_keep_ingesting(key_client, owner, database_down):
    """README, "When a dependency fails": an API key's look-up is cached in Redis, so its
    events still go to RabbitMQ (202); a person's token is checked against the user's row
    on every request (deactivation, role), so a person gets 503 with Retry-After."""
    service = key_client(scopes=["ingest"])
    person = APIClient()
    person.credentials(HTTP_AUTHORIZATION=f"Bearer {RefreshToken.for_user(owner).access_token}")
    assert post_json(service, valid_event()).status_code == 202  # caches the key's look-up
    assert post_json(person, valid_event()).status_code == 202

    database_down()

    assert post_json(service, valid_event()).status_code == 202
    refused = post_json(person, valid_event())
    assert (refused.status_code, refused["Retry-After"]) == (503, "5")
    assert refused.json()["error"]["code"] == "unavailable"
