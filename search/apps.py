from django.apps import AppConfig


class SearchConfig(AppConfig):
    name = "search"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from audit import ports
        from search import (
            documents,  # noqa: F401  (registers the Elasticsearch document)
            receivers,
            tasks,  # noqa: F401  (its retry series at 0 in the web too, for /metrics)
            tasks_purge,  # noqa: F401  (not named tasks.py: Celery's autodiscovery misses it)
        )
        from search.metrics import SearchStateCollector
        from search.selectors import event_queryset_search
        from traceledger.metrics import SCRAPE_COLLECTORS

        receivers.connect()
        ports.set_event_search(event_queryset_search)
        if not any(isinstance(c, SearchStateCollector) for c in SCRAPE_COLLECTORS):
            SCRAPE_COLLECTORS.append(SearchStateCollector())
