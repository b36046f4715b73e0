"""The error responses of the operations, for the OpenAPI schema. Every error has the
one shape of ``traceledger.api.exceptions``: ``{"error": {"code", "message", "fields"}}``."""

from drf_spectacular.utils import OpenApiResponse

AUTH_ERRORS = {
    401: OpenApiResponse(description="No or invalid credentials."),
    403: OpenApiResponse(
        description="The credential lacks the `read` scope, or names another tenant."
    ),
    429: OpenApiResponse(description="Rate limited; see `Retry-After`."),
    503: OpenApiResponse(
        description="The database is unreachable, or the credential or the record of this "
        "access cannot be checked or kept right now; see `Retry-After`."
    ),
}
READ_ERRORS = {
    400: OpenApiResponse(
        description="An invalid or unknown query parameter; `error.fields` names it."
    ),
    **AUTH_ERRORS,
}
# Login, refresh and user creation: the exception handler's answer while PostgreSQL is down.
DATABASE_UNAVAILABLE = {
    503: OpenApiResponse(description="The database is unreachable; see `Retry-After`.")
}
NOT_FOUND = {404: OpenApiResponse(description="No such event, or another tenant's.")}
