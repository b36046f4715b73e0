import os

from django.core.wsgi import get_wsgi_application

from traceledger.chunked_body import ChunkedBodyMiddleware

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "traceledger.settings")
# Web-only database settings (TRACELEDGER_WEB_LOCK_TIMEOUT) apply in this process.
os.environ.setdefault("TRACELEDGER_PROCESS", "web")
application = ChunkedBodyMiddleware(get_wsgi_application())
