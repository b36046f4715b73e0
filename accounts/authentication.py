"""``Authorization: Api-Key <key>`` for services (djangorestframework-api-key stores the hash)."""

from django.utils import timezone
from rest_framework import authentication, exceptions
from rest_framework_api_key.permissions import KeyParser

from accounts.models import ApiKey
from accounts.principal import Principal


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Api-Key"

    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header.startswith(f"{self.keyword} "):
            return None
        key = KeyParser().get_from_authorization(request._request) or ""
        api_key = self._lookup(key)
        if api_key is None:
            raise exceptions.AuthenticationFailed("Invalid, revoked or expired API key.")
        principal = Principal(
            kind="api_key",
            name=api_key.name,
            tenant_id=api_key.tenant_id,
            scopes=frozenset(api_key.scopes),
            api_key_id=api_key.pk,
        )
        return (ApiKeyUser(principal), principal)

    def authenticate_header(self, request) -> str:
        return self.keyword

    def _lookup(self, key: str) -> ApiKey | None:
        try:
            api_key = ApiKey.objects.get_from_key(key)
        except ApiKey.DoesNotExist:
            return None
        if api_key.revoked or api_key.has_expired:
            return None
        return api_key


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


def touch_last_used(api_key_id: str) -> None:
    ApiKey.objects.filter(pk=api_key_id).update(last_used_at=timezone.now())
