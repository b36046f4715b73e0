from rest_framework.permissions import BasePermission

from accounts.principal import get_principal


class _HasScope(BasePermission):
    scope = ""
    message = "This credential lacks the required scope."

    def has_permission(self, request, view) -> bool:
        if request.method == "OPTIONS" or not hasattr(view, request.method.lower()):
            # A method the view does not serve is its 405 for every credential (a scope
            # decided it first: 403 for one key, 405 for another); OPTIONS only describes.
            return True
        principal = get_principal(request)
        return principal is not None and principal.has_scope(self.scope)


class CanIngest(_HasScope):
    scope = "ingest"
    message = (
        "Posting events needs an API key with the 'ingest' scope, or the ingest or admin role."
    )


class CanRead(_HasScope):
    scope = "read"
    message = "Reading events needs an API key with the 'read' scope, or the auditor or admin role."


class IsTenantAdmin(_HasScope):
    scope = "admin"
    message = "Only a tenant admin or a superuser may do this."
