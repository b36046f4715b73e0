"""A page that needs PostgreSQL while it is unreachable: 503 with ``Retry-After``, not 500.

The API turns a database outage into its JSON 503 (``traceledger.api.exceptions``). The
admin had nothing of the kind: its session and user live in PostgreSQL, so while the
database was down every admin page (and the login of anyone with a session cookie) was a
500, "Server Error", as if the code were broken (an outage review).

``DatabaseUnavailableMiddleware`` answers a view's ``OperationalError`` or
``InterfaceError``; ``server_error`` (``handler500``) answers one raised outside a view
(a middleware saving the session), where ``process_exception`` is not called. The page is
plain HTML, rendered without templates: the admin's context processors would read the user,
from the database, again.
"""

import logging
import sys

from django.db import InterfaceError, OperationalError
from django.http import HttpResponse, JsonResponse
from django.views.defaults import server_error as django_server_error

from traceledger.api.exceptions import (
    BUSY_MESSAGE,
    DATABASE_RETRY_AFTER,
    database_busy,
    error_body,
)

logger = logging.getLogger(__name__)

DATABASE_ERRORS = (OperationalError, InterfaceError)
MESSAGE = "The database is unavailable; retry later."
PAGE = (
    "<!doctype html><html lang=en><head><meta charset=utf-8>"
    "<title>Service unavailable | TraceLedger</title></head><body>"
    "<h1>Service unavailable</h1><p>The database cannot be reached. Nothing was changed: "
    "reload this page in a few seconds.</p></body></html>"
)


BUSY_PAGE = PAGE.replace(
    "The database cannot be reached.",
    "The database is busy: another action holds what this page needs, or the work took too long.",
)


def unavailable_response(request, exception=None) -> HttpResponse:
    busy = exception is not None and database_busy(exception)
    if request.path.startswith("/api/"):
        response = JsonResponse(
            error_body("unavailable", BUSY_MESSAGE if busy else MESSAGE),
            status=503,
            json_dumps_params={"separators": (",", ":")},
        )
    else:
        response = HttpResponse(
            BUSY_PAGE if busy else PAGE, status=503, content_type="text/html; charset=utf-8"
        )
    response["Retry-After"] = str(DATABASE_RETRY_AFTER)
    return response


class DatabaseUnavailableMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not isinstance(exception, DATABASE_ERRORS):
            return None
        logger.warning("database unavailable, answering 503: %s", type(exception).__name__)
        return unavailable_response(request, exception)


def server_error(request, template_name="500.html"):
    """``handler500``: a database outage outside any view is a 503 too; anything else is
    Django's own 500 page."""
    exception = sys.exc_info()[1]
    if isinstance(exception, DATABASE_ERRORS):
        return unavailable_response(request, exception)
    return django_server_error(request, template_name)
