"""Refuse NUL characters in query parameters before any view sees them.

PostgreSQL text cannot hold NUL, so a ``?tenant=a%00b`` that reached a query would be a
``DataError`` (a 500) in whichever view used it. One check here instead of one per view.
"""

from django.http import JsonResponse

from traceledger.api.exceptions import error_body


class RejectNulQueryMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if "%00" in request.META.get("QUERY_STRING", ""):
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
        return self.get_response(request)
