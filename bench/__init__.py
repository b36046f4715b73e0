"""The ingest benchmark (``make bench``) and the endurance run (``make soak``).

Nothing here is imported by the product: the harness starts its own gunicorn and Celery
processes against a separate database, RabbitMQ vhost and Redis database.
"""

# Served only by the bench's own gunicorn (``bench.settings``), never by the product.
NAIVE_PATH = "bench/naive/audit-events"
