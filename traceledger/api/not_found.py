"""The 404 of any path under ``/api/`` that names no endpoint, in the API's error shape.

Without it Django answers such a path (``/api/v1/audit-events/not-a-uuid``, a typo, a
trailing slash) with an HTML page, and with DEBUG on a page that lists every URL pattern.

Exempt from CSRF, as every DRF view is: otherwise a POST, PUT, PATCH or DELETE to such a
path (``POST /api/v1/audit-events/``) met Django's CSRF check first and got its HTML 403
"CSRF verification failed" instead of this 404. The view reads nothing and changes
nothing, so there is nothing for the check to protect.
"""

from django.http import JsonResponse
from django.urls import Resolver404, resolve
from django.views.decorators.csrf import csrf_exempt

from traceledger.api.exceptions import error_body


def _path_meant(path: str) -> str | None:
    """The endpoint ``path`` names but for its trailing slash: the API's paths end without
    one, the schema's and Swagger UI's with one (Django's APPEND_SLASH cannot add it: this
    catch-all resolves every path under /api/)."""
    other = path.rstrip("/") if path.endswith("/") else f"{path}/"
    if other in ("/", path):
        return None
    try:
        match = resolve(other)
    except Resolver404:
        return None
    return None if match.func is api_not_found else other


@csrf_exempt
def api_not_found(request, *args, **kwargs) -> JsonResponse:
    message = f"No API endpoint at {request.path}; see /api/docs/."
    if (meant := _path_meant(request.path)) is not None:
        message = f"No API endpoint at {request.path}; did you mean {meant}?"
    return JsonResponse(
        error_body("not_found", message),
        status=404,
        json_dumps_params={"separators": (",", ":")},  # compact, as DRF renders the others
    )
