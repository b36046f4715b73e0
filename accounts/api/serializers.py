import time
from collections.abc import Mapping

from django.conf import settings
from django.db import connection, transaction
from rest_framework import serializers
from rest_framework_simplejwt.exceptions import AuthenticationFailed
from rest_framework_simplejwt.serializers import TokenObtainPairSerializer, TokenRefreshSerializer
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.tokens import RefreshToken
from rest_framework_simplejwt.utils import get_md5_hash_password

from accounts.models import Role, User

AUTH_TIME_CLAIM = "auth_time"  # as in OpenID Connect: when the person logged in


# A request body's unknown fields are refused (400, each named), not dropped, as for events:
# an "is_superuser" or a misspelt "emial" must not pass as if it had been applied. Mixed in
# before the serializer class; the OpenAPI schema says so (additionalProperties: false,
# accounts.schema). Comments, not a docstring: drf-spectacular would publish a docstring as
# the description of a serializer that has none of its own.
# The known fields' errors come in the same 400, so that one answer names every bad field.
class UnknownFieldsRefused:
    def to_internal_value(self, data):
        unknown = sorted(set(data) - set(self.fields)) if isinstance(data, Mapping) else []
        errors = {name: ["Unknown field."] for name in unknown}
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            if not errors or not isinstance(exc.detail, Mapping):
                raise
            raise serializers.ValidationError({**errors, **exc.detail}) from exc
        if errors:
            raise serializers.ValidationError(errors)
        return value


def identity_claims_set(token, user: User) -> None:
    """The caller's tenant and role, for clients to read (informative only: every request
    re-reads the user from the database)."""
    token["tenant"] = user.tenant.slug if user.tenant_id else None
    token["role"] = user.role or None
    token["is_superuser"] = user.is_superuser


class CurrentClaimsRefreshToken(RefreshToken):
    """A refresh token whose identity claims are read again from the user when it is
    redeemed: simplejwt copies the login's claims into every rotated token, so a user moved
    to another tenant or role kept announcing the old ones (tenancy QA)."""

    def __init__(self, token=None, verify: bool = True):
        super().__init__(token, verify=verify)
        if token is not None:
            user_id = self.payload.get(api_settings.USER_ID_CLAIM)
            user = User.objects.select_related("tenant").filter(pk=user_id).first()
            if user is not None:
                identity_claims_set(self, user)


class RotatingRefreshSerializer(UnknownFieldsRefused, TokenRefreshSerializer):
    """simplejwt's refresh, one at a time per refresh token.

    simplejwt checks that the token is not blacklisted, then blacklists it: two requests
    with the same token at the same moment both pass the check, and a stolen token could
    be redeemed beside the real client's, each turning into a lasting session. A
    transaction-scoped advisory lock on the token's ``jti`` makes the second request wait
    for the first to commit the blacklisting, and then fail it (401).
    """

    token_class = CurrentClaimsRefreshToken

    def validate(self, attrs):
        refresh = self.token_class(attrs["refresh"])  # verifies it
        jti = refresh[api_settings.JTI_CLAIM]
        _refuse_without_its_user_or_after_password_change(refresh)
        _refuse_an_expired_session(refresh)
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [f"refresh:{jti}"]
                )
            return super().validate(attrs)


def _refuse_without_its_user_or_after_password_change(refresh) -> None:
    """simplejwt checks the password claim (``CHECK_REVOKE_TOKEN``) on access tokens only: a
    refresh token issued before a password change would keep minting new sessions. And it
    looks the user up with ``.get()``: the token of a deleted user was a 500."""
    user = User.objects.filter(pk=refresh.get(api_settings.USER_ID_CLAIM)).first()
    if user is None:
        raise AuthenticationFailed(
            "No active account found for the given token.", "no_active_account"
        )
    if refresh.get(api_settings.REVOKE_TOKEN_CLAIM) != (get_md5_hash_password(user.password)):
        raise AuthenticationFailed("The user's password has been changed.", "password_changed")


def _refuse_an_expired_session(refresh) -> None:
    """Rotation keeps the login's ``auth_time`` claim (simplejwt rotates the same token) while
    renewing ``exp``: the session ends ``TRACELEDGER_JWT_SESSION_HOURS`` after the login."""
    auth_time = refresh.get(AUTH_TIME_CLAIM)
    limit = settings.TRACELEDGER_JWT_SESSION_HOURS * 3600
    if not isinstance(auth_time, int) or time.time() - auth_time > limit:
        raise AuthenticationFailed(
            f"The session is older than {settings.TRACELEDGER_JWT_SESSION_HOURS} hours: "
            "log in again.",
            "session_expired",
        )


class LoginSerializer(UnknownFieldsRefused, TokenObtainPairSerializer):
    """simplejwt's login, with the caller's tenant and role as claims for clients to read.

    The claims are informative only: every request re-reads the user (role, tenant, active)
    from the database, so a role change takes effect at once, not at token expiry.
    """

    @classmethod
    def get_token(cls, user):
        token = super().get_token(user)
        identity_claims_set(token, user)
        token[AUTH_TIME_CLAIM] = int(time.time())  # the login's time, kept by every refresh
        return token


class UserCreateInputSerializer(UnknownFieldsRefused, serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(write_only=True, trim_whitespace=False, max_length=128)
    role = serializers.ChoiceField(choices=Role.choices)
    # No default="": drf-spectacular wrote it into the email format, which "" is not, and
    # strict validators refused the whole schema (openapi-spec-validator).
    email = serializers.EmailField(required=False, allow_blank=True)
    tenant = serializers.SlugField(
        max_length=64,
        required=False,
        help_text="Tenant slug. Required for a superuser; a tenant admin may omit it or "
        "give their own tenant.",
    )


class UserOutputSerializer(serializers.ModelSerializer):
    tenant = serializers.SlugRelatedField(slug_field="slug", read_only=True)

    class Meta:
        model = User
        fields = ["id", "username", "email", "role", "tenant"]
        read_only_fields = fields


class TokenPairOutputSerializer(serializers.Serializer):
    """What login and refresh answer (refresh tokens rotate, so both come back)."""

    access = serializers.CharField(help_text="JWT for `Authorization: Bearer <access>`.")
    refresh = serializers.CharField(help_text="JWT for `POST /api/v1/auth/refresh`.")
