"""Who may call what: every endpoint of ARCHITECTURE §3, for every role and key scope.

To add an endpoint, add one ``Row``: method, path (``{id}`` is replaced by a random UUID),
a body builder, and the status each caller gets. Superusers call with ``?tenant=acme``
(``/users``: ``"tenant"`` in the body).
A row whose path is not routed yet is reported as skipped, never as passed.
"""

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from django.urls import Resolver404, resolve
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import RefreshToken

from accounts.api.serializers import LoginSerializer
from accounts.models import Role, User
from accounts.services import api_key_create
from accounts.tests.conftest import unique_ip

CALLERS = (
    "anonymous",
    "key:ingest",
    "key:read",
    "key:ingest+read",
    "user:admin",
    "user:auditor",
    "user:ingest",
    "superuser",
)
PASSWORD = "violet-Anchor-47-river"


def _event(_ctx) -> dict:
    return {
        "occurred_at": datetime.now(UTC).isoformat(),
        "action": "invoice.update",
        "actor": {"id": "user-1"},
    }


def _new_user(ctx) -> dict:
    return {
        "username": f"n-{uuid.uuid4().hex[:10]}",
        "password": PASSWORD,
        "role": "auditor",
        "tenant": "acme",
    }


def _login(ctx) -> dict:
    return {"username": ctx["someone"].username, "password": PASSWORD}


def _refresh(ctx) -> dict:
    # Minted as a login mints it (with the session's auth_time), not bare for_user().
    return {"refresh": str(LoginSerializer.get_token(ctx["someone"]))}


def _statuses(*codes: int) -> dict[str, int]:
    return dict(zip(CALLERS, codes, strict=True))


@dataclass(frozen=True)
class Row:
    method: str
    path: str
    expected: dict[str, int]
    body: Callable[[dict], dict] | None = None
    note: str = field(default="")


ANYONE = _statuses(200, 200, 200, 200, 200, 200, 200, 200)
#                              anon key:i key:r key:ir admin audit ingest super
READ = _statuses(401, 403, 200, 200, 200, 200, 403, 200)
# An unknown event id: 404 shows the caller got past authentication and permissions.
READ_ONE = _statuses(401, 403, 404, 404, 404, 404, 403, 404)

MATRIX = [
    Row("post", "/api/v1/auth/login", ANYONE, _login),
    Row("post", "/api/v1/auth/refresh", ANYONE, _refresh),
    Row("post", "/api/v1/users", _statuses(401, 403, 403, 403, 201, 403, 403, 201), _new_user),
    Row(
        "post",
        "/api/v1/audit-events",
        _statuses(401, 202, 403, 202, 202, 403, 202, 202),
        _event,
    ),
    Row("get", "/api/v1/audit-events", READ),
    Row("get", "/api/v1/audit-events/{id}", READ_ONE),
    Row("get", "/api/v1/audit-events/search?q=invoice", READ),
    Row("get", "/api/v1/audit-events/export?format=csv", READ),
    Row("get", "/api/v1/audit-events/export?format=jsonl", READ),
    Row("get", "/api/v1/ledger/verify", READ),
    Row("get", "/api/v1/ledger/checkpoints", READ),
]


def _routed(path: str) -> bool:
    try:
        resolve(path.split("?")[0].replace("{id}", str(uuid.uuid4())))
    except Resolver404:
        return False
    return True


def _cases():
    for row in MATRIX:
        marks = [] if _routed(row.path) else [pytest.mark.skip(reason=f"{row.path} not routed")]
        for caller in CALLERS:
            yield pytest.param(
                row, caller, id=f"{row.method.upper()} {row.path} as {caller}", marks=marks
            )


@pytest.fixture
def ctx(tenant):
    return {
        "someone": User.objects.create_user(
            username=f"s-{uuid.uuid4().hex[:10]}",
            password=PASSWORD,
            tenant=tenant,
            role=Role.AUDITOR,
        )
    }


def _client_for(caller: str, tenant) -> APIClient:
    client = APIClient(REMOTE_ADDR=unique_ip())
    if caller == "anonymous":
        return client
    if caller.startswith("key:"):
        _, key = api_key_create(
            tenant=tenant, name=caller, scopes=caller.removeprefix("key:").split("+")
        )
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
        return client
    if caller == "superuser":
        user = User.objects.create_superuser(
            username=f"root-{uuid.uuid4().hex[:8]}", password=PASSWORD
        )
    else:
        user = User.objects.create_user(
            username=f"{caller}-{uuid.uuid4().hex[:8]}",
            password=PASSWORD,
            tenant=tenant,
            role=Role(caller.removeprefix("user:")),
        )
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {RefreshToken.for_user(user).access_token}")
    return client


@pytest.mark.django_db
@pytest.mark.parametrize(("row", "caller"), list(_cases()))
def test_it_answers_each_caller_as_the_contract_says(row, caller, tenant, ctx):
    path = row.path.replace("{id}", str(uuid.uuid4()))
    # Endpoints with a JSON body of their own take the tenant there (_new_user), not here.
    if caller == "superuser" and not path.startswith(("/api/v1/auth/", "/api/v1/users")):
        path += ("&" if "?" in path else "?") + "tenant=acme"
    client = _client_for(caller, tenant)
    kwargs = {"format": "json"}
    if row.body is not None:
        kwargs["data"] = row.body(ctx)
    response = getattr(client, row.method)(path, **kwargs)
    assert response.status_code == row.expected[caller], getattr(response, "content", b"")[:300]
