"""Refuse NUL characters in query parameters before any view sees them.

PostgreSQL text cannot hold NUL, so a ``?tenant=a%00b`` that reached a query would be a
``DataError`` (a 500) in whichever view used it. One check here instead of one per view.

A view marked ``nul_query_handled`` reports NUL itself and is let through: the admin's
lists and the event export, which name such a parameter in a message and drop it
(``audit.admin.list_params.BadParamsNamedMixin``) rather than answer a person in the browser
with the API's JSON error.
"""

from django.http import JsonResponse

from traceledger.api.exceptions import error_body


def nul_query_handled(view):
    """Mark ``view`` (a function or method) as one that reports NUL in its query itself."""
    view.nul_query_handled = True
    return view


class RejectNulQueryMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_view(self, request, view_func, view_args, view_kwargs):
        # In process_view, not __call__: the mark is on the view, known once the URL resolved.
        # No middleware after this one reads query parameters before the view.
        if "%00" not in request.META.get("QUERY_STRING", ""):
            return None
        if getattr(view_func, "nul_query_handled", False):
            return None
        bad = sorted(
            {key for key, values in request.GET.lists() if "\x00" in key}
            | {key for key, values in request.GET.lists() if any("\x00" in v for v in values)}
        )
        if bad:
            fields = {key.replace("\x00", "\\u0000"): ["Must not contain NUL."] for key in bad}
            return JsonResponse(
                error_body("invalid", "Query parameters must not contain NUL.", fields),
                status=400,
            )
        return None
