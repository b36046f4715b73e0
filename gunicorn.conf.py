"""Gunicorn settings, read automatically by `gunicorn traceledger.wsgi:application`.

Threaded workers: a streamed export of a million rows runs for minutes, and a sync worker
is killed after `timeout` seconds mid-stream (the client would get a truncated 200). With
gthread the worker's heartbeat does not depend on the request finishing.
"""

import os

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = 10
keepalive = 5
# The longest request line gunicorn allows (its default, 4094, answers an HTML 414): a search
# of 512 characters outside ASCII is 4-12 bytes per character once URL-encoded, and its `next`
# link adds the filters and the cursor.
limit_request_line = 8190
accesslog = "-"
