"""Settings of the benchmark's own web processes: the product's, plus the naive endpoint.

Only the bench gunicorn uses this module (``DJANGO_SETTINGS_MODULE=bench.settings``); the
product's URLs never contain the naive endpoint.
"""

from traceledger.settings import *  # noqa: F403

ROOT_URLCONF = "bench.naive_urls"
