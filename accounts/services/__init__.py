"""Writes for tenants, users and API keys. The only place that changes these rows.

Every change is announced with ``accounts.signals.account_changed`` in its transaction, so
the audit app records it in the tenant's own trail, committed with the change. Keys and
passwords never leave this package except the plain key returned once by ``api_key_create``.

One module per kind of row (``tenants``, ``users``, ``api_keys``) and what their change
records share (``records``); callers import from the package.
"""

from accounts.models import SYSTEM_TENANT_SLUG
from accounts.services.api_keys import (
    api_key_create,
    api_key_revoke,
    api_key_save,
    api_key_scopes_validate,
    api_key_touch,
)
from accounts.services.records import actor_for_principal, actor_for_user
from accounts.services.tenants import (
    TENANT_NAME_MAX_LENGTH,
    TenantProvisioned,
    tenant_get_or_create,
    tenant_members_validate,
    tenant_name_validate,
    tenant_provision,
    tenant_save,
    tenant_slug_validate,
)
from accounts.services.users import (
    superuser_create,
    user_create,
    user_delete,
    user_fields_problems,
    user_password_changed,
    user_password_set,
    user_save,
    users_delete,
)

__all__ = [
    "SYSTEM_TENANT_SLUG",
    "TENANT_NAME_MAX_LENGTH",
    "TenantProvisioned",
    "actor_for_principal",
    "actor_for_user",
    "api_key_create",
    "api_key_revoke",
    "api_key_save",
    "api_key_scopes_validate",
    "api_key_touch",
    "superuser_create",
    "tenant_get_or_create",
    "tenant_members_validate",
    "tenant_name_validate",
    "tenant_provision",
    "tenant_save",
    "tenant_slug_validate",
    "user_create",
    "user_delete",
    "user_fields_problems",
    "user_password_changed",
    "user_password_set",
    "user_save",
    "users_delete",
]
