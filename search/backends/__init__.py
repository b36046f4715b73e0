"""Search backends: PostgreSQL full-text always, Elasticsearch when ``ELASTICSEARCH_URL`` is set.

The PostgreSQL table is kept in sync even when Elasticsearch answers searches, so that a
fallback finds every event (see docs/search.md).
"""

from django.conf import settings

from search.backends.base import SearchBackend
from search.backends.postgresql import PostgresBackend


def primary_backend() -> SearchBackend:
    if settings.ELASTICSEARCH_URL:
        from search.backends.elasticsearch import ElasticsearchBackend

        return ElasticsearchBackend()
    return PostgresBackend()


def index_backends() -> list[SearchBackend]:
    """Every backend the indexer keeps in sync, PostgreSQL first."""
    backends: list[SearchBackend] = [PostgresBackend()]
    if settings.ELASTICSEARCH_URL:
        from search.backends.elasticsearch import ElasticsearchBackend

        backends.append(ElasticsearchBackend())
    return backends
