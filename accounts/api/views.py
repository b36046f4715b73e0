from collections.abc import Mapping

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.views import TokenObtainPairView, TokenRefreshView

from accounts.api.serializers import (
    LoginSerializer,
    RotatingRefreshSerializer,
    TokenPairOutputSerializer,
    UserCreateInputSerializer,
    UserOutputSerializer,
)
from accounts.models import Tenant
from accounts.permissions import IsTenantAdmin
from accounts.principal import get_principal
from accounts.ratelimits import LoginIpRateLimit, LoginUsernameRateLimit
from accounts.selectors import tenant_get, tenant_get_by_slug
from accounts.services import actor_for_principal, user_create, user_fields_problems
from traceledger.api.responses import DATABASE_UNAVAILABLE

_ERRORS = {
    400: OpenApiResponse(description="Invalid fields: `error.fields` names each one."),
    401: OpenApiResponse(description="No or invalid credentials."),
    415: OpenApiResponse(
        description="The body is not `application/json`, or is compressed "
        "(`Content-Encoding` other than `identity`): send it uncompressed."
    ),
    429: OpenApiResponse(description="Too many requests; see `Retry-After`."),
    **DATABASE_UNAVAILABLE,
}


class NoQueryParamsMixin:
    """These endpoints read their JSON body alone. A query parameter was silently ignored,
    ``?tenant=beta`` above all (the read endpoints' way to name a tenant): the user was
    created in another tenant than the one the caller named."""

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)  # authentication and throttling first
        if request.query_params:
            raise ValidationError(
                {
                    name: [
                        "Unknown query parameter; this endpoint takes none: its fields "
                        'go in the JSON body (a superuser names the tenant as "tenant").'
                    ]
                    for name in sorted(request.query_params)
                }
            )


@extend_schema(
    tags=["auth"],
    summary="Log in: username and password for an access and a refresh token",
    responses={200: TokenPairOutputSerializer, **_ERRORS},
)
class LoginView(NoQueryParamsMixin, TokenObtainPairView):
    serializer_class = LoginSerializer
    # Brute force: per client IP and, against attacks spread over many IPs, per username.
    throttle_classes = [LoginIpRateLimit, LoginUsernameRateLimit]


@extend_schema(
    tags=["auth"],
    summary="Exchange a refresh token for a new access token (and a new refresh token)",
    responses={200: TokenPairOutputSerializer, **_ERRORS},
)
class RefreshView(NoQueryParamsMixin, TokenRefreshView):
    serializer_class = RotatingRefreshSerializer
    # A refresh token is a signed, unguessable JWT: nothing to brute-force here.
    throttle_classes: list = []


class UserCreateView(NoQueryParamsMixin, APIView):
    """Creates a user with a role: in the caller's tenant, or (superuser) in any tenant."""

    permission_classes = [IsAuthenticated, IsTenantAdmin]

    @extend_schema(
        tags=["users"],
        # People only: a service key is authenticated, then refused (403), never allowed.
        auth=[{"jwtAuth": []}],
        request=UserCreateInputSerializer,
        responses={
            201: UserOutputSerializer,
            403: OpenApiResponse(
                description="Not a tenant admin or superuser (an API key never may)."
            ),
            **_ERRORS,
        },
    )
    def post(self, request):
        serializer = UserCreateInputSerializer(data=request.data)
        errors = {} if serializer.is_valid() else dict(serializer.errors)
        data = serializer.validated_data if not errors else _fields_passed(serializer, errors)
        principal = get_principal(request)
        # Every bad field in one 400: the tenant and the service's checks (a taken username,
        # a weak password) also for a request whose other fields were refused.
        tenant = None
        if "tenant" not in errors:
            try:
                tenant = self._tenant(principal, data.get("tenant"))
            except ValidationError as exc:
                errors.update(exc.detail)
        if errors:
            # Otherwise user_create makes these checks itself, all at once.
            problems = user_fields_problems(
                username=data.get("username"),
                password=data.get("password"),
                email=data.get("email", ""),
            )
            for name, messages in problems.items():
                errors.setdefault(name, messages)
            raise ValidationError(errors)
        try:
            user = user_create(
                tenant=tenant,
                username=data["username"],
                password=data["password"],
                role=data["role"],
                email=data.get("email", ""),
                actor=actor_for_principal(principal),
            )
        except DjangoValidationError as exc:
            raise ValidationError(exc.message_dict) from exc
        return Response(UserOutputSerializer(user).data, status=status.HTTP_201_CREATED)

    @staticmethod
    def _tenant(principal, slug: str | None) -> Tenant:
        if principal.is_superuser:
            if not slug:
                raise ValidationError({"tenant": ["A superuser must name the tenant."]})
            tenant = tenant_get_by_slug(slug=slug)
            if tenant is None:
                raise ValidationError({"tenant": [f"No tenant with slug {slug!r}."]})
            return tenant
        own = tenant_get(tenant_id=principal.tenant_id)
        if slug and slug != own.slug:
            # Same answer whether the other tenant exists or not: no existence leak.
            raise ValidationError({"tenant": ["A tenant admin creates users in their own tenant."]})
        return own


def _fields_passed(serializer, errors) -> dict:
    """The fields of a refused body that passed their own checks, cleaned as they would be."""
    raw = serializer.initial_data
    if not isinstance(raw, Mapping):
        return {}
    passed = {}
    for name, field in serializer.fields.items():
        if name in errors or name not in raw:
            continue
        try:
            passed[name] = field.run_validation(raw[name])
        except ValidationError:  # not expected: the field passed once already
            continue
    return passed
