"""``Authorization: Api-Key <key>`` for services (djangorestframework-api-key stores the hash).

Look-ups go through ``accounts.selectors.api_key_principal_get`` (cached in Redis), so the
hot ingest path neither queries nor writes PostgreSQL for a known key.
"""

import logging
import re

from django.db import DatabaseError
from rest_framework import authentication, exceptions, status
from rest_framework_simplejwt import authentication as simplejwt
from rest_framework_simplejwt.exceptions import ExpiredTokenError, InvalidToken, TokenError
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.tokens import RefreshToken

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


_SCHEME = re.compile(r"api-key(?:[ \t]+(?P<key>.*))?", re.IGNORECASE | re.DOTALL)


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Api-Key"

    def authenticate(self, request):
        # Auth schemes are case-insensitive (RFC 9110 §11.1): "api-key …" is this scheme, not
        # "no credentials". A server strips the space after a bare "Api-Key " (trailing
        # whitespace of a header value), leaving the scheme. Any run of spaces or tabs
        # separates the key (djangorestframework-api-key's parser split at the first space:
        # "Api-Key  <key>" was a key starting with a space, refused as invalid, and counted
        # against the address's bad-key limit).
        match = _SCHEME.fullmatch(request.META.get("HTTP_AUTHORIZATION", "").strip())
        if match is None:
            return None
        key = match["key"] or ""
        if not key:
            bad_keys_count(request._request)
            raise exceptions.AuthenticationFailed(
                f"The API key is missing: send `Authorization: {self.keyword} <key>`."
            )
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


class JWTAuthentication(simplejwt.JWTAuthentication):
    """simplejwt's, with each way a token fails told apart where simplejwt answers "Given
    token not valid for any token type" to all: an expired access token (refresh), no JWT
    at all (an API key sent as Bearer), a refresh token still usable (exchange it); a forged
    token keeps simplejwt's words. Still ``token_not_valid``, as before. The scheme is matched
    case-insensitively, and a bare "Bearer" says the token is missing."""

    def get_raw_token(self, header: bytes) -> bytes | None:
        # simplejwt matches the scheme case-sensitively (RFC 9110 §11.1: it is not) and says
        # "must contain two space-delimited values" also for a bare "Bearer".
        parts = header.split()
        if not parts or parts[0].lower() not in _SCHEMES:
            return None
        if len(parts) == 1:
            raise exceptions.AuthenticationFailed(
                "The token is missing: send `Authorization: Bearer <access token>`.",
                code="bad_authorization_header",
            )
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed(
                "The Authorization header must be `Bearer <access token>`, one token"
                " without spaces.",
                code="bad_authorization_header",
            )
        return parts[1]

    def get_validated_token(self, raw_token):
        try:
            return super().get_validated_token(raw_token)
        except InvalidToken:
            if _expired(raw_token):
                raise InvalidToken(
                    "Token is expired: get a new one from POST /api/v1/auth/refresh."
                ) from None
            if raw_token.count(b".") != 2:  # get_raw_token hands over the header's bytes
                # No JWT at all: most often a service's API key sent as Bearer.
                raise InvalidToken(
                    "Not an access token (a JWT from POST /api/v1/auth/login); a service's "
                    "API key is sent as `Authorization: Api-Key <key>`."
                ) from None
            if _valid_refresh_token(raw_token):
                raise InvalidToken(
                    "This is a refresh token: exchange it at POST /api/v1/auth/refresh for "
                    "an access token."
                ) from None
            raise


_SCHEMES = {
    (scheme.encode() if isinstance(scheme, str) else scheme).lower()
    for scheme in jwt_settings.AUTH_HEADER_TYPES
}


def _expired(raw_token) -> bool:
    """Whether the token is an access token (of a type accepted here) simplejwt finds
    expired. PyJWT checks the signature before ``exp``, so only a token this service signed
    can be; a forged one stays "not valid". So does an expired token of another type (a
    refresh token sent as Bearer): refreshing would not make it usable here."""
    for token_class in jwt_settings.AUTH_TOKEN_CLASSES:
        try:
            token_class(raw_token)
        except ExpiredTokenError:
            # The expiry stopped simplejwt before its type check; the signature has passed,
            # so the claims can be read unverified (through simplejwt's backend) for it.
            claims = token_class(raw_token, verify=False).payload
            if claims.get(jwt_settings.TOKEN_TYPE_CLAIM) == token_class.token_type:
                return True
        except TokenError:
            continue
    return False


def _valid_refresh_token(raw_token) -> bool:
    """Whether the token is a refresh token this service signed and still honours (not
    expired, not blacklisted): then the caller only sent the wrong one of the pair."""
    try:
        RefreshToken(raw_token)
    except TokenError:
        return False
    return True


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
