import os

from django.core.wsgi import get_wsgi_application

from traceledger.request_body import RequestBodyMiddleware

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "traceledger.settings")
# Web-only database settings (TRACELEDGER_WEB_LOCK_TIMEOUT) apply in this process.
os.environ.setdefault("TRACELEDGER_PROCESS", "web")
application = RequestBodyMiddleware(get_wsgi_application())
