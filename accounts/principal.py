"""Who is calling: one shape for service keys and people, used by every permission check.

Views and selectors take a ``Principal`` rather than poking at ``request.user`` or
``request.auth``, so tenant scoping has a single source of truth.
"""

from dataclasses import dataclass

from accounts.models import Role, Scope

ROLE_SCOPES: dict[str, frozenset[str]] = {
    Role.ADMIN: frozenset({Scope.READ, Scope.INGEST, "admin"}),
    Role.AUDITOR: frozenset({Scope.READ}),
    Role.INGEST: frozenset({Scope.INGEST}),
}
ALL_SCOPES = frozenset({Scope.READ, Scope.INGEST, "admin"})


@dataclass(frozen=True)
class Principal:
    kind: str  # "api_key" | "user"
    name: str  # key name or username, as recorded in audit events about this caller
    tenant_id: int | None  # None only for a superuser
    scopes: frozenset[str]
    is_superuser: bool = False
    user_id: int | None = None
    # The key's public prefix (unique, shown in the admin): never its hash or the key.
    api_key_id: str | None = None

    @property
    def rate_key(self) -> str:
        """Identity for rate limits: one bucket per key or per user."""
        return f"key:{self.api_key_id}" if self.api_key_id else f"user:{self.user_id}"

    @property
    def submitter(self) -> str:
        """Who submitted events, as stored with each (``AuditEvent.submitted_by``)."""
        return f"api_key:{self.api_key_id}" if self.api_key_id else f"user:{self.user_id}"

    def has_scope(self, scope: str) -> bool:
        return self.is_superuser or scope in self.scopes


def principal_for_user(user) -> Principal:
    return Principal(
        kind="user",
        name=user.get_username(),
        tenant_id=user.tenant_id,
        scopes=ALL_SCOPES if user.is_superuser else ROLE_SCOPES.get(user.role, frozenset()),
        is_superuser=user.is_superuser,
        user_id=user.pk,
    )


def get_principal(request) -> Principal | None:
    """The caller of a DRF or Django request, or None when anonymous."""
    auth = getattr(request, "auth", None)
    if isinstance(auth, Principal):
        return auth
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return principal_for_user(user)
    return None
