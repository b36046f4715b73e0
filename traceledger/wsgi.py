import os

from django.core.wsgi import get_wsgi_application

from traceledger.chunked_body import ChunkedBodyMiddleware

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "traceledger.settings")
application = ChunkedBodyMiddleware(get_wsgi_application())
