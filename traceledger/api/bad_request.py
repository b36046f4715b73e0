"""Django's 400 for a request it refuses before any view runs (a ``Host`` header outside
``DJANGO_ALLOWED_HOSTS``, too many form fields): in the API's error shape under ``/api/``,
where a client parses JSON, and Django's own page everywhere else."""

from django.core.exceptions import DisallowedHost
from django.http import JsonResponse
from django.views.defaults import bad_request

from traceledger.api.exceptions import error_body


def bad_request_handler(request, exception):
    if not request.path.startswith("/api/"):
        return bad_request(request, exception)
    if isinstance(exception, DisallowedHost):
        # Not the header's value: it is the client's own, and Django logs it for operators.
        message = "The Host header names a host this service does not answer to."
    else:
        message = "The request was refused before it reached the API."
    return JsonResponse(
        error_body("bad_request", message),
        status=400,
        json_dumps_params={"separators": (",", ":")},  # compact, as DRF renders the others
    )
