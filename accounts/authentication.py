"""``Authorization: Api-Key <key>`` for services (djangorestframework-api-key stores the hash).

Look-ups go through ``accounts.selectors.api_key_principal_get`` (cached in Redis), so the
hot ingest path neither queries nor writes PostgreSQL for a known key.
"""

import logging

from django.db import DatabaseError
from rest_framework import authentication, exceptions, status
from rest_framework_api_key.permissions import KeyParser

from accounts.principal import Principal
from accounts.ratelimits import bad_keys_check, bad_keys_count
from accounts.selectors import api_key_principal_get
from accounts.services import api_key_touch

logger = logging.getLogger(__name__)


class AuthenticationUnavailable(exceptions.APIException):
    """Neither the key cache nor PostgreSQL could tell who the caller is."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "Credentials cannot be checked right now; retry shortly."
    default_code = "unavailable"
    wait = 5  # DRF's handler turns this into Retry-After


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Api-Key"

    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        # Auth schemes are case-insensitive (RFC 9110 §11.1), as the key parser below treats
        # them: "api-key …" is this scheme, not "no credentials".
        if header[: len(self.keyword) + 1].lower() != f"{self.keyword.lower()} ":
            return None
        key = KeyParser().get_from_authorization(request._request) or ""
        if not key:
            bad_keys_count(request._request)
            raise exceptions.AuthenticationFailed("Invalid, revoked or expired API key.")
        try:
            principal = api_key_principal_get(
                key=key, before_lookup=lambda: bad_keys_check(request._request)
            )
        except DatabaseError as exc:
            # Redis may be up: the key was simply not cached (or not cacheable) yet.
            logger.error(
                "API key look-up failed: not in the cache, and the database is unavailable"
            )
            raise AuthenticationUnavailable() from exc
        if principal is None:
            bad_keys_count(request._request)
            raise exceptions.AuthenticationFailed("Invalid, revoked or expired API key.")
        api_key_touch(prefix=principal.api_key_id)
        return (ApiKeyUser(principal), principal)

    def authenticate_header(self, request) -> str:
        return self.keyword


class ApiKeyUser:
    """Stands in for ``request.user`` when a service key authenticated the request."""

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False
    pk = None
    id = None

    def __init__(self, principal: Principal):
        self.principal = principal
        self.username = f"api-key:{principal.name}"

    def get_username(self) -> str:
        return self.username

    def __str__(self) -> str:
        return self.username
