"""Gunicorn settings of the bench's web processes (``-c bench/gunicorn_bench.py``).

Passing a config file keeps the product's ``gunicorn.conf.py`` (gthread, access log to
stdout) out of the measurement: the bench runs 2 sync workers, one request at a time each,
as the baselines in issue 9 were measured, with no access log.
"""

worker_class = "sync"
threads = 1
accesslog = None
timeout = 60
graceful_timeout = 5
