"""Gunicorn settings of the bench's web processes (``-c bench/gunicorn_bench.py``).

Passing a config file keeps the product's ``gunicorn.conf.py`` (its access log to stdout)
out of the measurement. The worker class defaults to sync here; ``python -m bench`` passes
the product's gthread class (``processes.GTHREAD_WORKER``) and ``--threads 4`` unless
``--web-threads 1`` (sync, as the baselines in issue 9 were measured).
"""

worker_class = "sync"
threads = 1
accesslog = None
timeout = 60
graceful_timeout = 5
