import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from django.db import connection
from django.test import override_settings
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from accounts.models import Role, User
from accounts.tests.conftest import unique_ip

PASSWORD = "correct-horse-battery"


def _login(client, username, password=PASSWORD):
    return client.post(
        "/api/v1/auth/login", {"username": username, "password": password}, format="json"
    )


@pytest.fixture
def person(tenant):
    return User.objects.create_user(
        username=f"p-{uuid.uuid4().hex[:10]}", password=PASSWORD, tenant=tenant, role=Role.AUDITOR
    )


@pytest.mark.django_db
def test_it_logs_in_with_tenant_and_role_claims(anon_client, person):
    response = _login(anon_client, person.username)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access", "refresh"}
    claims = jwt.decode(body["access"], options={"verify_signature": False})
    assert claims["tenant"] == "acme"
    assert claims["role"] == "auditor"
    assert claims["is_superuser"] is False


@pytest.mark.django_db
def test_it_lets_the_access_token_read_events(anon_client, person):
    access = _login(anon_client, person.username).json()["access"]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    assert client.get("/api/v1/audit-events").status_code == 200


@pytest.mark.django_db
def test_it_answers_401_with_the_error_body_for_a_wrong_password(anon_client, person):
    response = _login(anon_client, person.username, "wrong-password")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "no_active_account"


@pytest.mark.django_db
def test_it_answers_400_naming_the_missing_field(anon_client):
    response = anon_client.post("/api/v1/auth/login", {"username": "x"}, format="json")
    assert response.status_code == 400
    assert "password" in response.json()["error"]["fields"]


@pytest.mark.django_db
def test_login_refuses_unknown_fields_naming_them(anon_client, person):
    """As /users and the event body do: a field the login does not read is refused, not
    dropped (it answered 200)."""
    body = {"username": person.username, "password": PASSWORD, "x": 1, "otp": "123456"}
    response = anon_client.post("/api/v1/auth/login", body, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["fields"]) == (
        "invalid",
        {"otp": ["Unknown field."], "x": ["Unknown field."]},
    )


@pytest.mark.django_db
def test_refresh_refuses_unknown_fields_and_leaves_the_token_usable(anon_client, person):
    refresh = _login(anon_client, person.username).json()["refresh"]
    body = {"refresh": refresh, "rotate": False}
    response = anon_client.post("/api/v1/auth/refresh", body, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"rotate": ["Unknown field."]}
    # Refused before simplejwt saw the token: not blacklisted, and it still rotates once.
    first = anon_client.post("/api/v1/auth/refresh", {"refresh": refresh}, format="json")
    assert first.status_code == 200
    reused = anon_client.post("/api/v1/auth/refresh", {"refresh": refresh}, format="json")
    assert reused.json()["error"]["code"] == "token_not_valid"


@pytest.mark.django_db
def test_it_refuses_a_deactivated_user(anon_client, person):
    person.is_active = False
    person.save()
    assert _login(anon_client, person.username).status_code == 401


@pytest.mark.django_db
def test_it_rotates_the_refresh_token_and_blacklists_the_old_one(anon_client, person):
    refresh = _login(anon_client, person.username).json()["refresh"]
    first = anon_client.post("/api/v1/auth/refresh", {"refresh": refresh}, format="json")
    assert first.status_code == 200
    assert set(first.json()) == {"access", "refresh"}
    assert first.json()["refresh"] != refresh
    reused = anon_client.post("/api/v1/auth/refresh", {"refresh": refresh}, format="json")
    assert reused.status_code == 401
    assert reused.json()["error"]["code"] == "token_not_valid"


@pytest.mark.django_db
def test_a_refresh_announces_the_users_tenant_and_role_as_they_are_now(
    anon_client, person, other_tenant
):
    """simplejwt copied the login's claims into every rotated token (tenancy QA): a user moved
    to another tenant and role kept announcing the old ones."""
    refresh = _login(anon_client, person.username).json()["refresh"]
    person.tenant, person.role = other_tenant, Role.INGEST
    person.save()

    body = anon_client.post("/api/v1/auth/refresh", {"refresh": refresh}, format="json").json()

    for token in (body["access"], body["refresh"]):
        claims = jwt.decode(token, options={"verify_signature": False})
        assert (claims["tenant"], claims["role"]) == ("globex", "ingest")
    again = anon_client.post("/api/v1/auth/refresh", {"refresh": body["refresh"]}, format="json")
    assert again.status_code == 200


@pytest.mark.django_db(transaction=True)
def test_one_refresh_token_sent_many_times_at_once_is_redeemed_once(person):
    refresh = _login(APIClient(REMOTE_ADDR=unique_ip()), person.username).json()["refresh"]
    start = threading.Barrier(8)
    statuses = []

    def redeem():
        try:
            start.wait()
            response = APIClient().post("/api/v1/auth/refresh", {"refresh": refresh}, format="json")
            statuses.append(response.status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=redeem) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(statuses) == [200] + [401] * 7


@pytest.mark.django_db
def test_it_rejects_an_access_token_as_a_refresh_token(anon_client, person):
    access = _login(anon_client, person.username).json()["access"]
    response = anon_client.post("/api/v1/auth/refresh", {"refresh": access}, format="json")
    assert response.status_code == 401


@pytest.mark.django_db
@override_settings(TRACELEDGER_RATELIMIT_LOGIN="3/m")
def test_it_rate_limits_wrong_passwords_per_ip(anon_client, person):
    statuses = [
        _login(anon_client, f"nobody-{uuid.uuid4().hex[:8]}", "wrong").status_code for _ in range(4)
    ]
    assert statuses == [401, 401, 401, 429]
    # The right password from the same address is refused too, until the window ends.
    response = _login(anon_client, person.username)
    assert response.status_code == 429
    assert 1 <= int(response["Retry-After"]) <= 60
    assert response.json()["error"]["code"] == "rate_limited"


@pytest.mark.django_db
@override_settings(TRACELEDGER_RATELIMIT_LOGIN="3/m")
def test_it_rate_limits_one_username_across_many_ips(person):
    statuses = [
        _login(APIClient(REMOTE_ADDR=unique_ip()), person.username, "wrong").status_code
        for _ in range(4)
    ]
    assert statuses == [401, 401, 401, 429]
    # Case games do not open a fresh bucket, nor do other spellings that log in as the same
    # account (fullwidth, mathematical bold: NFKC): even with the right password.
    shouted = _login(APIClient(REMOTE_ADDR=unique_ip()), person.username.upper(), "wrong")
    assert shouted.status_code == 429
    fullwidth = "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in person.username)
    assert _login(APIClient(REMOTE_ADDR=unique_ip()), fullwidth).status_code == 429


@pytest.mark.django_db
@override_settings(TRACELEDGER_RATELIMIT_LOGIN="2/m")
def test_it_does_not_limit_other_users_or_addresses(person, tenant):
    for _ in range(3):
        _login(APIClient(REMOTE_ADDR=unique_ip()), person.username, "wrong")
    other = User.objects.create_user(
        username=f"o-{uuid.uuid4().hex[:10]}", password=PASSWORD, tenant=tenant, role=Role.ADMIN
    )
    assert _login(APIClient(REMOTE_ADDR=unique_ip()), other.username).status_code == 200


@pytest.mark.django_db
@override_settings(TRACELEDGER_RATELIMIT_LOGIN="2/m")
def test_two_accounts_that_only_full_case_folding_makes_alike_have_their_own_buckets(tenant):
    # "straße" and "STRASSE" are two accounts (unique and matched by lower case, as in
    # PostgreSQL): guessing at one must not lock the other out.
    suffix = uuid.uuid4().hex[:8]
    for name in (f"straße-{suffix}", f"STRASSE-{suffix}"):
        User.objects.create_user(username=name, password=PASSWORD, tenant=tenant, role=Role.ADMIN)
    for _ in range(3):
        _login(APIClient(REMOTE_ADDR=unique_ip()), f"STRASSE-{suffix}", "wrong")

    assert _login(APIClient(REMOTE_ADDR=unique_ip()), f"straße-{suffix}").status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize("mode", ["refuse", "blackhole"])
@override_settings(TRACELEDGER_RATELIMIT_LOGIN="1/m")
def test_it_lets_logins_through_when_redis_is_cut(anon_client, person, redis_cut, mode, caplog):
    with redis_cut(mode):
        statuses = [_login(anon_client, person.username).status_code for _ in range(3)]
    assert statuses == [200, 200, 200]


@pytest.mark.django_db
def test_the_refresh_token_of_a_deleted_user_is_a_401_not_a_server_error(anon_client, person):
    refresh = _login(anon_client, person.username).json()["refresh"]
    person.delete()

    response = anon_client.post("/api/v1/auth/refresh", {"refresh": refresh}, format="json")

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "no_active_account"


@pytest.mark.django_db
def test_the_username_is_matched_ignoring_case_at_login(anon_client, person):
    response = _login(anon_client, person.username.upper())
    assert response.status_code == 200
    claims = jwt.decode(response.json()["access"], options={"verify_signature": False})
    assert claims["user_id"] == str(person.pk)


@pytest.mark.django_db
def test_a_fullwidth_spelling_of_the_username_logs_in_as_its_plain_form(anon_client, person):
    fullwidth = "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in person.username)
    assert _login(anon_client, fullwidth).status_code == 200


@pytest.mark.django_db
def test_a_password_change_ends_every_session_access_and_refresh(anon_client, person):
    tokens = _login(anon_client, person.username).json()
    person.set_password("a-new-Password-99")
    person.save()
    client = APIClient()

    client.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens['access']}")
    read = client.get("/api/v1/ledger/public-key")
    client.credentials()
    refreshed = client.post("/api/v1/auth/refresh", {"refresh": tokens["refresh"]}, format="json")

    assert read.status_code == 401
    assert refreshed.status_code == 401
    assert "password has been changed" in refreshed.json()["error"]["message"]
    # The new password's tokens work.
    fresh = _login(anon_client, person.username, "a-new-Password-99").json()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {fresh['access']}")
    assert client.get("/api/v1/ledger/public-key").status_code != 401


@pytest.mark.django_db
@override_settings(TRACELEDGER_JWT_SESSION_HOURS=1)
def test_refreshing_keeps_a_session_alive_only_until_its_absolute_end(
    anon_client, person, monkeypatch
):
    import time as real_time

    from accounts.api import serializers

    tokens = _login(anon_client, person.username).json()
    first = anon_client.post("/api/v1/auth/refresh", {"refresh": tokens["refresh"]}, format="json")
    assert first.status_code == 200

    class Later:
        @staticmethod
        def time():
            return real_time.time() + 3601

    monkeypatch.setattr(serializers, "time", Later)
    late = anon_client.post(
        "/api/v1/auth/refresh", {"refresh": first.json()["refresh"]}, format="json"
    )

    assert late.status_code == 401
    assert late.json()["error"]["code"] == "session_expired"
    assert "older than 1 hours: log in again" in late.json()["error"]["message"]


def _bearer(token) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


@pytest.mark.django_db
@pytest.mark.parametrize("header", ["Bearer ", "Bearer", "bearer  ", "BEARER\t"])
def test_a_bearer_scheme_without_a_token_says_the_token_is_missing(db, header):
    """Not simplejwt's "must contain two space-delimited values" to one value."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)

    response = client.get("/api/v1/audit-events")

    assert response.status_code == 401
    assert response.json()["error"] == {
        "code": "bad_authorization_header",
        "message": "The token is missing: send `Authorization: Bearer <access token>`.",
    }


@pytest.mark.django_db
def test_a_token_with_a_space_in_it_is_named_as_such(db):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer abc def")

    response = client.get("/api/v1/audit-events")

    assert response.status_code == 401
    assert "one token without spaces" in response.json()["error"]["message"]


@pytest.mark.django_db
@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "beArer"])
def test_the_bearer_scheme_is_case_insensitive(person, scheme):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"{scheme} {AccessToken.for_user(person)}")

    assert client.get("/api/v1/audit-events").status_code == 200


@pytest.mark.django_db
def test_an_expired_access_token_is_said_to_be_expired(person):
    """So a client knows to refresh (simplejwt says "not valid for any token type" to both)."""
    token = AccessToken.for_user(person)
    token.set_exp(from_time=datetime.now(UTC) - timedelta(hours=1))

    response = _bearer(token).get("/api/v1/audit-events")

    assert response.status_code == 401
    assert response.json()["error"] == {
        "code": "token_not_valid",
        "message": "Token is expired: get a new one from POST /api/v1/auth/refresh.",
    }


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("expired", "message"),
    [
        (
            False,
            "This is a refresh token: exchange it at POST /api/v1/auth/refresh for an access "
            "token.",
        ),
        # Not "expired: get a new one from refresh", nor "exchange it": it is no use now.
        (True, "Given token not valid for any token type"),
    ],
)
def test_a_refresh_token_sent_as_bearer_is_named_while_it_can_still_be_exchanged(
    person, expired, message
):
    token = RefreshToken.for_user(person)
    if expired:
        token.set_exp(from_time=datetime.now(UTC) - timedelta(days=2))

    response = _bearer(token).get("/api/v1/audit-events")

    assert response.status_code == 401
    assert response.json()["error"] == {"code": "token_not_valid", "message": message}


@pytest.mark.django_db
@pytest.mark.parametrize("token", ["abcd1234.s3cretpart0123456789abcdefABCDEF", "garbage"])
def test_an_api_key_sent_as_bearer_is_told_its_header(db, token):
    """The newcomer's mistake: simplejwt said "Given token not valid for any token type"."""
    response = _bearer(token).get("/api/v1/audit-events")

    assert response.status_code == 401
    assert response.json()["error"] == {
        "code": "token_not_valid",
        "message": "Not an access token (a JWT from POST /api/v1/auth/login); a service's API "
        "key is sent as `Authorization: Api-Key <key>`.",
    }


@pytest.mark.django_db
@pytest.mark.parametrize("expired", [False, True])
def test_a_forged_access_token_is_not_valid_expired_or_not(person, expired):
    """The signature is checked before the expiry: a forged token is never "expired"."""
    claims = dict(AccessToken.for_user(person).payload)
    if expired:
        claims["exp"] = int(time.time()) - 3600
    forged = jwt.encode(claims, "not-the-signing-key-" * 3, algorithm="HS256")

    response = _bearer(forged).get("/api/v1/audit-events")

    assert response.status_code == 401
    assert response.json()["error"] == {
        "code": "token_not_valid",
        "message": "Given token not valid for any token type",
    }
