"""Request bodies sent with ``Transfer-Encoding: chunked`` (no ``Content-Length``).

Django reads exactly ``CONTENT_LENGTH`` bytes of a WSGI request, and 0 when it is absent, so
a chunked body (what many HTTP clients send for a streamed or generated body) arrived as
empty: a valid event was answered 400 "Malformed JSON", an oversized one too instead of 413.
When the server says ``wsgi.input_terminated`` (gunicorn does: it de-chunks and ends the
stream at the last chunk), this middleware reads the body up to one byte past the limit
and hands Django a sized body; past the limit Django refuses it as too big (413).
"""

import io

from django.conf import settings


class ChunkedBodyMiddleware:
    def __init__(self, application):
        self.application = application

    def __call__(self, environ, start_response):
        if (
            not environ.get("CONTENT_LENGTH")
            and "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
            and environ.get("wsgi.input_terminated")
        ):
            limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
            body = environ["wsgi.input"].read(limit + 1 if limit is not None else -1)
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
        return self.application(environ, start_response)
