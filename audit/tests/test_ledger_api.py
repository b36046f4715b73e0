"""GET /api/v1/ledger/verify, /ledger/checkpoints, /ledger/public-key."""

import base64

import pytest
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from django.core.cache import cache
from drf_spectacular.generators import SchemaGenerator

from audit.api.ledger import VERIFY_MAX_EVENTS
from audit.ledger.services import checkpoints_sign
from audit.ledger.signing import checkpoint_message
from audit.tests.ledger_factories import chained_events_create, events_tamper

VERIFY = "/api/v1/ledger/verify"
CHECKPOINTS = "/api/v1/ledger/checkpoints"
PUBLIC_KEY = "/api/v1/ledger/public-key"

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    cache.clear()


@pytest.fixture
def chain(tenant):
    chained_events_create(tenant_id=tenant.id, count=6)
    return tenant


def _tamper_sequence(tenant, sequence):
    events_tamper(
        "UPDATE audit_auditevent SET actor_id = 'mallory' WHERE tenant_id = %s AND sequence = %s",
        [tenant.id, sequence],
    )


@pytest.mark.parametrize("path", [VERIFY, CHECKPOINTS, PUBLIC_KEY])
def test_it_rejects_an_anonymous_caller(api_client, path):
    assert api_client.get(path).status_code == 401


@pytest.mark.parametrize("path", [VERIFY, CHECKPOINTS, PUBLIC_KEY])
def test_it_rejects_a_key_without_the_read_scope(key_client, path):
    response = key_client(scopes=["ingest"]).get(path)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"


def test_it_verifies_an_intact_chain(key_client, chain):
    response = key_client(scopes=["read"]).get(VERIFY)

    assert response.status_code == 200
    body = response.json()
    assert (body["ok"], body["checked"], body["first_bad_sequence"]) == (True, 6, None)
    assert body["whole_chain"] is True


def test_it_names_the_first_bad_sequence(key_client, chain):
    _tamper_sequence(chain, 4)

    body = key_client(scopes=["read"]).get(VERIFY).json()

    assert (body["ok"], body["first_bad_sequence"]) == (False, 4)


def test_it_verifies_only_the_last_n_events_when_asked(key_client, chain):
    _tamper_sequence(chain, 2)
    client = key_client(scopes=["read"])

    last_three = client.get(VERIFY, {"last": 3}).json()
    assert (last_three["ok"], last_three["checked"], last_three["from_sequence"]) == (True, 3, 4)
    # ok, yet not for the chain: the answer says so (contract QA: the default last 20,000
    # of a longer chain read as the whole chain verified).
    assert last_three["whole_chain"] is False
    up_to_five = client.get(VERIFY, {"from_sequence": 1, "to_sequence": 5}).json()
    assert (up_to_five["ok"], up_to_five["whole_chain"]) == (False, False)
    everything = client.get(VERIFY, {"from_sequence": 1, "to_sequence": 99}).json()
    assert (everything["first_bad_sequence"], everything["whole_chain"]) == (2, True)
    assert (
        client.get(VERIFY, {"from_sequence": 2, "to_sequence": 3}).json()["first_bad_sequence"] == 2
    )


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from_sequence": "x"}, "from_sequence"),
        ({"from_sequence": 0}, "from_sequence"),
        ({"from_sequence": 5, "to_sequence": 2}, "to_sequence"),
        ({"from_sequence": 1, "to_sequence": VERIFY_MAX_EVENTS + 1}, "to_sequence"),
        ({"last": VERIFY_MAX_EVENTS + 1}, "last"),
        ({"last": 3, "from_sequence": 1}, "last"),
        ({"foo": 1}, "foo"),
        ({"cursor": "x"}, "cursor"),
        ({"page_size": 10}, "page_size"),
        ({"last": 3, "actor_id": "alice"}, "actor_id"),
        ({"from_sequence": 99999999999999999999}, "from_sequence"),
        ({"to_sequence": 2**63}, "to_sequence"),
        ({"from_sequence": 7}, "from_sequence"),  # beyond the head (6): nothing to verify
    ],
)
def test_it_names_the_bad_parameter(key_client, chain, params, field):
    response = key_client(scopes=["read"]).get(VERIFY, params)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"
    assert field in response.json()["error"]["fields"]


def _cursor(query: str) -> str:
    """A cursor as DRF encodes one: base64 of a query string (o=offset, r=reverse, p=position)."""
    return base64.b64encode(query.encode()).decode()


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"page_size": "0"}, "page_size"),
        ({"page_size": "-1"}, "page_size"),
        ({"page_size": "abc"}, "page_size"),
        ({"page_size": "501"}, "page_size"),
        ({"foo": "1"}, "foo"),
        ({"last": "3"}, "last"),
        ({"actor_id": "alice"}, "actor_id"),
        ({"cursor": "bad"}, "cursor"),
        ({"cursor": _cursor("p=garbage")}, "cursor"),
        ({"cursor": _cursor("o=99999999&p=garbage")}, "cursor"),
        ({"cursor": _cursor("p=2026-01-01T00:00:00.000000Z|" + "0" * 32)}, "cursor"),
        ({"cursor": _cursor("p=1.5")}, "cursor"),
        ({"cursor": _cursor("p=-1")}, "cursor"),
        ({"cursor": _cursor("p=" + "9" * 30)}, "cursor"),
        ({"cursor": _cursor("r=x&p=1")}, "cursor"),
        ({"cursor": _cursor("hello")}, "cursor"),  # base64, but no token of a cursor
        ({"cursor": _cursor("p=1&x=2")}, "cursor"),
        ({"cursor": _cursor("p=1&p=2")}, "cursor"),
    ],
)
def test_checkpoints_name_the_bad_parameter(key_client, chain, params, field):
    checkpoints_sign()

    response = key_client(scopes=["read"]).get(CHECKPOINTS, params)

    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert field in error["fields"]


def test_checkpoints_accept_the_page_size_bounds_and_their_own_cursor(key_client, chain):
    checkpoints_sign()
    client = key_client(scopes=["read"])

    assert client.get(CHECKPOINTS, {"page_size": 1}).status_code == 200
    assert client.get(CHECKPOINTS, {"page_size": 500}).status_code == 200
    assert client.get(CHECKPOINTS, {"page_size": ""}).status_code == 200
    page = client.get(CHECKPOINTS, {"cursor": _cursor("p=999999")}).json()
    assert [c["sequence"] for c in page["results"]] == [6]


def test_it_refuses_another_tenants_slug(user_client, outsider, chain):
    response = user_client(outsider).get(VERIFY, {"tenant": chain.slug})
    assert response.status_code == 403
    assert user_client(outsider).get(CHECKPOINTS, {"tenant": chain.slug}).status_code == 403


def test_it_verifies_only_the_callers_own_tenant(key_client, chain, other_tenant):
    _tamper_sequence(chain, 1)

    body = key_client(scopes=["read"], for_tenant=other_tenant).get(VERIFY).json()

    assert (body["ok"], body["checked"]) == (True, 0)


def test_a_superuser_names_the_tenant(user_client, superuser, chain):
    client = user_client(superuser)

    missing = client.get(VERIFY)
    assert missing.status_code == 400
    assert "tenant" in missing.json()["error"]["fields"]
    assert client.get(VERIFY, {"tenant": "nope"}).status_code == 400
    assert client.get(VERIFY, {"tenant": chain.slug}).json()["checked"] == 6


def test_checkpoints_are_listed_with_the_key_that_verifies_them(key_client, chain, other_tenant):
    checkpoints_sign()
    chained_events_create(tenant_id=chain.id, count=2, start=6)
    chained_events_create(tenant_id=other_tenant.id, count=1)
    checkpoints_sign()

    response = key_client(scopes=["read"]).get(CHECKPOINTS, {"page_size": 1})

    assert response.status_code == 200
    body = response.json()
    assert [c["sequence"] for c in body["results"]] == [8]
    assert body["next"]
    key = load_pem_public_key(body["public_key"].encode())
    [checkpoint] = body["results"]
    message = checkpoint_message(
        tenant_id=checkpoint["tenant_id"],
        sequence=checkpoint["sequence"],
        hash=checkpoint["hash"],
        signed_at=checkpoint["signed_at"],
        kind=checkpoint["kind"],
        details=checkpoint["details"],
    )
    key.verify(bytes.fromhex(checkpoint["signature"]), message)  # raises if invalid
    second = key_client(scopes=["read"]).get(body["next"]).json()
    assert [c["sequence"] for c in second["results"]] == [6]
    assert second["next"] is None


def test_each_checkpoint_names_its_tenant_by_slug_beside_the_signed_id(key_client, chain):
    """The slug lets the offline tool tell another tenant's checkpoints from tampering; it is
    a label, not part of the signed message (checked above without it)."""
    checkpoints_sign()

    [checkpoint] = key_client(scopes=["read"]).get(CHECKPOINTS).json()["results"]

    assert (checkpoint["tenant_id"], checkpoint["tenant"]) == (chain.id, "acme")
    schema = SchemaGenerator().get_schema(request=None, public=True)
    tenant = schema["components"]["schemas"]["Checkpoint"]["properties"]["tenant"]
    assert tenant["readOnly"] is True
    assert "not signed" in tenant["description"]


def test_every_checkpoint_link_walks_forward_and_back(key_client, chain):
    for start in (6, 7, 8):  # four checkpoints, one per page
        checkpoints_sign()
        chained_events_create(tenant_id=chain.id, count=1, start=start)
    checkpoints_sign()
    client = key_client(scopes=["read"])
    pages, url, params = [], CHECKPOINTS, {"page_size": 1}
    while url:
        body = client.get(url, params).json()
        pages.append([c["sequence"] for c in body["results"]])
        url, params = body["next"], None
    assert pages == [[9], [8], [7], [6]]

    back, url = [], body["previous"]
    while url:
        response = client.get(url)
        assert response.status_code == 200, response.json()
        back.append([c["sequence"] for c in response.json()["results"]])
        url = response.json()["previous"]
    assert back == [[7], [8], [9]]


def test_the_public_key_is_served(key_client, db):
    body = key_client(scopes=["read"]).get(PUBLIC_KEY).json()

    assert body["public_key"].startswith("-----BEGIN PUBLIC KEY-----")
    assert len(body["key_id"]) == 64


def test_it_rate_limits_verification(key_client, chain, settings):
    settings.TRACELEDGER_RATELIMIT_READ = "1/m"
    client = key_client(scopes=["read"])

    assert client.get(VERIFY).status_code == 200
    response = client.get(VERIFY)
    assert response.status_code == 429
    assert "Retry-After" in response


def test_the_ledger_endpoints_document_their_parameters_and_the_400():
    from drf_spectacular.generators import SchemaGenerator

    paths = SchemaGenerator().get_schema(request=None, public=True)["paths"]

    expected = {
        VERIFY: {"from_sequence", "to_sequence", "last", "tenant"},
        CHECKPOINTS: {"cursor", "page_size", "tenant"},
    }
    for path, names in expected.items():
        operation = paths[path]["get"]
        assert {p["name"] for p in operation["parameters"]} == names
        assert "400" in operation["responses"]
    page_size = next(p for p in paths[CHECKPOINTS]["get"]["parameters"] if p["name"] == "page_size")
    assert "1 to 500" in page_size["description"]


def test_a_range_over_the_head_sees_an_event_stored_beyond_it(key_client, chain):
    from audit.models import AuditEvent
    from audit.tests.test_ledger_verify import _forged_row

    six = AuditEvent.objects.get(tenant=chain, sequence=6)
    AuditEvent.objects.create(
        **_forged_row(chain.id, sequence=7, prev_hash=six.hash, valid_hash=True)
    )

    body = key_client(scopes=["read"]).get(VERIFY, {"from_sequence": 2, "to_sequence": 20}).json()

    assert (body["ok"], body["first_bad_sequence"]) == (False, 7)


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"from_sequence": 2, "to_sequence": 20}, (5, 2, 6)),  # past the head (6)
        ({"from_sequence": 3}, (4, 3, 6)),  # alone: 20,000 events asked, 4 stored
        ({"to_sequence": 4}, (4, 1, 4)),
        ({"to_sequence": 999_999}, (6, 1, 6)),  # alone, past the head: up to the head
        ({}, (6, 1, 6)),
        ({"last": 2}, (2, 5, 6)),
    ],
)
def test_it_answers_with_the_range_it_verified_not_the_one_asked(
    key_client, chain, params, expected
):
    body = key_client(scopes=["read"]).get(VERIFY, params).json()

    assert body["ok"] is True
    assert (body["checked"], body["from_sequence"], body["to_sequence"]) == expected


def test_it_documents_the_verified_range_in_the_schema():
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    properties = schema["components"]["schemas"]["VerifyOutput"]["properties"]

    assert "chain head" in properties["to_sequence"]["description"]
    assert properties["to_sequence"]["nullable"] is True
    assert "range actually verified" in schema["paths"][VERIFY]["get"]["description"]


def test_a_range_inside_the_purged_prefix_is_a_400(key_client, tenant):
    from datetime import UTC, datetime

    from audit.ledger.services import events_purge

    chained_events_create(
        tenant_id=tenant.id, count=3, received_at=datetime(2026, 1, 1, tzinfo=UTC)
    )
    chained_events_create(tenant_id=tenant.id, count=1, start=3)
    events_purge(tenant_id=tenant.id, before=datetime(2026, 1, 2, tzinfo=UTC))

    response = key_client(scopes=["read"]).get(VERIFY, {"to_sequence": 2})

    assert response.status_code == 400
    assert "retention purge" in response.json()["error"]["fields"]["to_sequence"][0]


def test_to_sequence_alone_on_an_empty_chain_is_a_400_naming_it(key_client):
    response = key_client(scopes=["read"]).get(VERIFY, {"to_sequence": 5})

    assert response.status_code == 400
    assert set(response.json()["error"]["fields"]) == {"to_sequence"}


@pytest.mark.parametrize("query", ["foo=1", "tenant=other", "format=json"])
def test_the_public_key_takes_no_query_parameters(key_client, query):
    response = key_client(scopes=["read"]).get(f"/api/v1/ledger/public-key?{query}")
    assert response.status_code == 400
    name = query.split("=")[0]
    assert response.json()["error"]["fields"][name] == [
        "Unknown query parameter; this endpoint takes none."
    ]
