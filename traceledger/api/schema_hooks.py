"""OpenAPI post-processing: what every error response and every response carries.

Every error of the API has one body (``traceledger.api.exceptions.error_body``), a 429 or
503 says when to retry, and every response echoes the request id. Declared here once, for
every operation, instead of on each view: a client generated from the schema can then type
the errors and read ``Retry-After`` (the views' error responses only had a description).
"""

# Every `error.code` the API answers, with when where the name does not say it. Checked
# against the codes the API's exceptions and error bodies actually carry (project and
# simplejwt sources) by traceledger/tests/test_api_error_codes.py, so that a code added
# in the code cannot be missing here again (user_inactive, session_expired and
# password_changed were).
ERROR_CODES = {
    "invalid": "a bad field or query parameter, named in `fields`",
    "parse_error": "the body is not JSON",
    "incomplete_body": "the body ended before its `Content-Length`",
    "bad_request": "refused before the API, e.g. a `Host` this service does not answer to",
    "not_authenticated": None,
    "authentication_failed": "an invalid, revoked or expired API key",
    "bad_authorization_header": "`Authorization: Bearer` without exactly one token",
    "token_not_valid": "a malformed, expired or already used JWT",
    "user_not_found": "the access token's user no longer exists",
    "user_inactive": "the access token's user is deactivated",
    "password_changed": "the token predates a password change: log in again",
    "session_expired": "the login is older than `TRACELEDGER_JWT_SESSION_HOURS`: log in again",
    "no_active_account": "login: wrong credentials or a deactivated user; refresh: the "
    "user is deactivated",
    "permission_denied": None,
    "not_found": None,
    "method_not_allowed": None,
    "not_acceptable": None,
    "request_timeout": None,
    "too_large": None,
    "unsupported_media_type": None,
    "rate_limited": "a rate limit",
    "overloaded": "the ingest backlog is full, or an export found as many exports "
    "streaming from the server process as it allows",
    "unavailable": "a dependency is down",
}

ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {
                    "type": "string",
                    "description": "Machine-readable: "
                    + ", ".join(
                        f"{code} ({when})" if when else code for code, when in ERROR_CODES.items()
                    )
                    + ".",
                },
                "message": {"type": "string", "description": "For people."},
                "fields": {
                    "type": "object",
                    "additionalProperties": True,
                    "description": "Each bad field (or query parameter) with its messages; "
                    "for a list body, each bad item by its index.",
                },
            },
            "required": ["code", "message"],
        }
    },
    "required": ["error"],
}
RETRY_AFTER = {
    "description": "Seconds to wait before retrying. Nothing of a refused request was accepted.",
    "schema": {"type": "integer", "minimum": 1},
}
REQUEST_ID = {
    "description": "The request's id (the client's `X-Request-ID` when it is 1-128 of "
    "`A-Za-z0-9._:-`, else a new one): the log lines of the request and of the worker that "
    "stores its events carry it; quote it to support.",
    "schema": {"type": "string"},
}


# Answers every operation can give that no view declares: content negotiation (DRF's,
# before the view), and for a request body the limits read before Django
# (traceledger/request_body.py, Django's own size check).
NOT_ACCEPTABLE = {"description": "`Accept` names no type this operation answers in (JSON)."}
BODY_RESPONSES = {
    "408": {
        "description": "The request head, or then the whole body, did not arrive within "
        "`TRACELEDGER_BODY_TIMEOUT` (30 s): nothing was accepted; the connection is closed "
        "(`Connection: close`)."
    },
    "413": {
        "description": "The body is larger than `TRACELEDGER_MAX_BODY_BYTES` (5 MiB); the rest "
        "of it is not read, so the connection is closed (`Connection: close`)."
    },
}


def error_responses(result, generator, request, public):
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    for methods in result.get("paths", {}).values():
        for operation in methods.values():
            responses = operation.setdefault("responses", {})
            # The export declares its own (CSV or JSON Lines, not JSON).
            responses.setdefault("406", dict(NOT_ACCEPTABLE))
            if "requestBody" in operation:
                for status, response in BODY_RESPONSES.items():
                    responses.setdefault(status, dict(response))
            for status, response in responses.items():
                headers = response.setdefault("headers", {})
                headers.setdefault("X-Request-ID", REQUEST_ID)
                if not str(status).isdigit() or int(status) < 400:
                    continue
                response.setdefault(
                    "content",
                    {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                )
                if int(status) in (429, 503):
                    headers.setdefault("Retry-After", RETRY_AFTER)
    return result
