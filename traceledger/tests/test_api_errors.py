"""The one error shape also where Django, not our views, refuses a request."""

import gzip

import pytest
from rest_framework.test import APIClient

from traceledger.api.parsers import MAX_DEPTH

BODY = '{"username": "x", "password": "y", "pad": "' + "z" * 2048 + '"}'


def _assert_json_413(response):
    assert response.status_code == 413
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["error"]["code"] == "too_large"


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/api/v1/auth/login", "/api/v1/auth/refresh"])
def test_a_body_over_the_limit_is_a_json_413_before_login(settings, path):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    _assert_json_413(APIClient().generic("POST", path, BODY, content_type="application/json"))


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("limit", "says"),
    [
        (5 * 1024 * 1024, "5,242,880 bytes (5 MiB)"),
        (1024 * 1024 + 512 * 1024, "1,572,864 bytes (1.5 MiB)"),
        (100_000, "100,000 bytes (about 0.1 MiB)"),
    ],
)
def test_the_413_states_the_limit_in_bytes_and_mib(settings, limit, says):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = limit
    body = '{"username": "x", "password": "' + "y" * limit + '"}'
    response = APIClient().generic(
        "POST", "/api/v1/auth/login", body, content_type="application/json"
    )
    _assert_json_413(response)
    assert response.json()["error"]["message"] == (
        f"The request body is too large: the limit is {says}."
    )


def test_a_body_over_the_limit_is_a_json_413_for_a_signed_in_admin(settings, owner, user_client):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    response = user_client(owner).generic(
        "POST", "/api/v1/users", BODY, content_type="application/json"
    )
    _assert_json_413(response)


@pytest.mark.parametrize("path", ["/api/v1/auth/login", "/api/v1/auth/refresh", "/api/v1/users"])
def test_a_compressed_body_is_a_json_415_naming_content_encoding(owner, user_client, path):
    body = gzip.compress(b'{"username": "owner", "password": "correct-horse-battery"}')
    response = user_client(owner).generic(
        "POST", path, body, content_type="application/json", HTTP_CONTENT_ENCODING="gzip"
    )
    assert response.status_code == 415
    assert response.json()["error"] == {
        "code": "unsupported_media_type",
        "message": "Unsupported Content-Encoding 'gzip': send the request body uncompressed, "
        "without a `Content-Encoding` header (or with `Content-Encoding: identity`).",
    }
    assert response["Accept-Encoding"] == "identity"


@pytest.mark.django_db
def test_a_plain_body_that_claims_to_be_compressed_is_refused_too():
    response = APIClient().generic(
        "POST",
        "/api/v1/auth/login",
        b'{"username": "owner", "password": "correct-horse-battery"}',
        content_type="application/json",
        HTTP_CONTENT_ENCODING="br",
    )
    assert response.status_code == 415
    assert "Content-Encoding 'br'" in response.json()["error"]["message"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("authorization", "challenge"),
    [
        ("Bearer not-a-jwt", 'Bearer realm="api"'),
        ("Api-Key not-a-key", "Api-Key"),
        ("api-key not-a-key", "Api-Key"),
        ("Basic eDp5", "Api-Key"),  # a scheme we do not take: as without credentials
        (None, "Api-Key"),
    ],
)
def test_a_401_challenges_with_the_scheme_the_client_used(authorization, challenge):
    client = APIClient()
    if authorization:
        client.credentials(HTTP_AUTHORIZATION=authorization)
    response = client.get("/api/v1/audit-events")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == challenge


@pytest.mark.parametrize("authorization", ["tl_rawkeywithoutscheme.secret", "Basic dXNlcjpwYXNz"])
def test_credentials_in_an_unknown_scheme_are_told_which_schemes_work(authorization):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=authorization)

    response = client.get("/api/v1/audit-events")

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
    assert "`Authorization: Api-Key <key>`" in response.json()["error"]["message"]
    assert response["WWW-Authenticate"] == "Api-Key"


def test_no_credentials_at_all_still_says_so():
    response = APIClient().get("/api/v1/audit-events")
    assert response.json()["error"]["message"] == "Authentication credentials were not provided."


# A lone surrogate escape is valid JSON text but no Unicode string: echoed in an error or
# used as a rate-limit key it was a 500 (no login needed for the first one).
@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/auth/login", '{"username": "\\ud800", "password": "x"}'),
        ("/api/v1/auth/login", '{"username": "a", "password": "b", "\\udfff": 1}'),
        ("/api/v1/auth/refresh", '{"refresh": "x", "k": ["\\ud800"]}'),
        ("/api/v1/users", '{"username": "u", "password": "p", "role": "\\ud83d"}'),
    ],
)
def test_a_lone_surrogate_in_a_json_body_is_a_400_parse_error(owner, user_client, path, body):
    client = user_client(owner) if path == "/api/v1/users" else APIClient()

    response = client.post(path, body, content_type="application/json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "parse_error"
    assert "surrogate" in response.json()["error"]["message"]


# A few KB of brackets reach Python's recursion limit inside json (no login needed on the
# first two paths): a 500 before. Nesting past MAX_DEPTH is refused before anything walks it.
@pytest.mark.django_db
@pytest.mark.parametrize("depth", [2000, MAX_DEPTH + 1])
@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/api/v1/auth/login", "username"),
        ("/api/v1/auth/refresh", "refresh"),
        ("/api/v1/users", "role"),
    ],
)
def test_a_json_body_nested_too_deeply_is_a_400_parse_error(
    owner, user_client, path, field, depth, settings
):
    # A bucket of their own: the login tests after these count in this IP's 10/m.
    settings.TRACELEDGER_RATELIMIT_LOGIN = "1000/m"
    client = user_client(owner) if path == "/api/v1/users" else APIClient()
    body = f'{{"{field}": {"[" * (depth - 1)}{"]" * (depth - 1)}, "password": "x"}}'

    response = client.post(path, body, content_type="application/json")

    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "parse_error",
        "message": "Malformed JSON: nested too deeply.",
        **{k: v for k, v in response.json()["error"].items() if k not in ("code", "message")},
    }


# json reads an integer with int(), which refuses more than 4,300 digits: DRF's 400 said
# "... use sys.set_int_max_str_digits() to increase the limit", advice for the server.
@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/api/v1/auth/login", "username"),
        ("/api/v1/auth/refresh", "refresh"),
        ("/api/v1/users", "role"),
    ],
)
def test_an_integer_of_more_than_4300_digits_is_a_400_parse_error_saying_so(
    owner, user_client, path, field, settings
):
    settings.TRACELEDGER_RATELIMIT_LOGIN = "1000/m"  # a bucket of its own, as above
    client = user_client(owner) if path == "/api/v1/users" else APIClient()
    body = f'{{"{field}": {"9" * 5000}, "password": "x"}}'

    response = client.post(path, body, content_type="application/json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "parse_error"
    assert response.json()["error"]["message"] == (
        "Malformed JSON: a number has more than 4,300 digits."
    )


@pytest.mark.django_db
def test_nesting_up_to_max_depth_is_parsed_and_judged_by_the_view(settings):
    settings.TRACELEDGER_RATELIMIT_LOGIN = "1000/m"
    body = f'{{"refresh": {"[" * (MAX_DEPTH - 1)}{"]" * (MAX_DEPTH - 1)}}}'
    response = APIClient().post("/api/v1/auth/refresh", body, content_type="application/json")
    assert response.status_code in (400, 401)
    assert response.json()["error"]["code"] != "parse_error"


@pytest.mark.django_db
def test_a_body_labelled_with_a_charset_other_than_utf8_is_a_415(settings):
    settings.TRACELEDGER_RATELIMIT_LOGIN = "1000/m"
    body = '{"username": "caf\xc3\xa9", "password": "x"}'.encode("latin-1")
    response = APIClient().generic(
        "POST", "/api/v1/auth/login", body, content_type="application/json; charset=iso-8859-1"
    )
    assert response.status_code == 415
    assert "Unsupported charset 'iso-8859-1'" in response.json()["error"]["message"]


@pytest.mark.django_db
def test_a_surrogate_pair_is_an_ordinary_character():
    body = '{"username": "\\ud83d\\ude00", "password": "x"}'  # an emoji, escaped
    response = APIClient().post("/api/v1/auth/login", body, content_type="application/json")
    assert response.status_code == 401
