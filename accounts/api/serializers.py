from rest_framework import serializers
from rest_framework_simplejwt.serializers import TokenObtainPairSerializer

from accounts.models import Role, User


class LoginSerializer(TokenObtainPairSerializer):
    """simplejwt's login, with the caller's tenant and role as claims for clients to read.

    The claims are informative only: every request re-reads the user (role, tenant, active)
    from the database, so a role change takes effect at once, not at token expiry.
    """

    @classmethod
    def get_token(cls, user):
        token = super().get_token(user)
        token["tenant"] = user.tenant.slug if user.tenant_id else None
        token["role"] = user.role or None
        token["is_superuser"] = user.is_superuser
        return token


class UserCreateInputSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(write_only=True, trim_whitespace=False, max_length=128)
    role = serializers.ChoiceField(choices=Role.choices)
    email = serializers.EmailField(required=False, allow_blank=True, default="")
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
