"""Hooks other apps plug into, so that audit never imports them (dependency inversion).

The search app registers its full-text search here in its ``AppConfig.ready()``; the audit
admin calls ``event_search`` without knowing which backend answers.
"""

from collections.abc import Callable

from django.db.models import QuerySet

# fn(queryset, q) -> queryset narrowed to events matching the user's query text
EventSearch = Callable[[QuerySet, str], QuerySet]
_event_search: EventSearch | None = None


def set_event_search(fn: EventSearch) -> None:
    global _event_search
    _event_search = fn


def event_search(queryset: QuerySet, q: str) -> QuerySet:
    if _event_search is None:
        raise RuntimeError("no search backend registered (is the search app installed?)")
    return _event_search(queryset, q)
