"""The 404 of any path under ``/api/`` that names no endpoint, in the API's error shape.

Without it Django answers such a path (``/api/v1/audit-events/not-a-uuid``, a typo, a
trailing slash) with an HTML page, and with DEBUG on a page that lists every URL pattern.

Exempt from CSRF, as every DRF view is: otherwise a POST, PUT, PATCH or DELETE to such a
path (``POST /api/v1/audit-events/``) met Django's CSRF check first and got its HTML 403
"CSRF verification failed" instead of this 404. The view reads nothing and changes
nothing, so there is nothing for the check to protect.
"""

from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt

from traceledger.api.exceptions import error_body


@csrf_exempt
def api_not_found(request, *args, **kwargs) -> JsonResponse:
    return JsonResponse(
        error_body("not_found", f"No API endpoint at {request.path}; see /api/docs/."),
        status=404,
        json_dumps_params={"separators": (",", ":")},  # compact, as DRF renders the others
    )
