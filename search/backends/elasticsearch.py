"""Elasticsearch backend: ``simple_query_string`` with the user syntax of the PostgreSQL one.

Elasticsearch returns ids and sort values only; the events themselves are read back from
PostgreSQL (the source of truth) through the caller's scoped, filtered queryset, so a stale
or foreign document can never leak into a response and both backends answer in one shape.
"""

import re
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from django.conf import settings
from elasticsearch import Elasticsearch, helpers

from audit.models import AuditEvent
from search.backends.base import SearchPage, SearchRequest, cursor_values
from search.documents import INDEX_ALIAS, AuditEventDocument

# Fields the words are looked for in, weighted like the PostgreSQL vector (A=3, B=2, C=1).
QUERY_FIELDS = [
    "action.text^3",
    "actor_id.text^3",
    "actor_name^3",
    "target_id.text^3",
    "target_type.text^3",
    "target_name^3",
    "description^2",
    "metadata_text",
]
# Only the operators websearch_to_tsquery understands: "phrase", OR (as |), -exclusion; and
# parentheses, which only the translation below writes (to give AND precedence over OR, as
# websearch_to_tsquery does: simple_query_string reads operators strictly left to right).
# Prefix (*) and fuzzy (~) are off, so those characters are plain text.
QUERY_FLAGS = "AND|OR|NOT|PHRASE|PRECEDENCE|WHITESPACE"
TERM_FILTERS = (
    "event_id",
    "actor_id",
    "actor_type",
    "target_type",
    "target_id",
    "outcome",
    "severity",
)
_QUOTED = re.compile(r'("[^"]*"?)')
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def user_query_to_simple_query_string(q: str) -> str:
    """Rewrite websearch syntax for ``simple_query_string``, with the same meaning.

    ``a OR b c -d`` means ``a | (b & c & !d)`` to websearch_to_tsquery, but ``(a | b) c -d``
    to simple_query_string, which reads left to right: so the words between ORs are grouped
    in parentheses. Outside quotes, ``|``, ``+`` and parentheses typed by the user are
    dropped (websearch_to_tsquery treats them as plain punctuation, so must we).

    A ``-`` that stands before a word or phrase, also apart from it (``- draft``,
    ``-"annual report"``, ``-(draft)``), excludes it in websearch_to_tsquery; Lucene's parser
    forgets a pending ``-`` at the next space, which would turn the exclusion into a
    requirement. So such dashes are written against their word or phrase, as many as were
    typed (two cancel out in both parsers); one with nothing after it is dropped, as is
    one before an empty phrase or before the word ``OR``, which websearch_to_tsquery then
    reads as a negated word, and a stop word.
    """
    groups: list[list[str]] = [[]]
    dashes = ""  # the "-" typed apart from the word or phrase they exclude
    for chunk in _QUOTED.split(q):
        if chunk.startswith('"'):
            inside = chunk[1:-1] if chunk.endswith('"') and len(chunk) > 1 else chunk[1:]
            if inside.strip():
                groups[-1].append(f'{dashes}"{inside}"')
            dashes = ""
            continue
        for word in re.sub(r"[|+()]", " ", chunk).split():
            if not word.strip("-"):
                dashes += word
            elif word.lstrip("-").upper() == "OR" and (dashes or word.startswith("-")):
                dashes = ""  # a negated stop word: nothing
            elif word.upper() == "OR":
                groups.append([])
            else:
                groups[-1].append(dashes + word)
                dashes = ""
    groups = [group for group in groups if group]
    if len(groups) == 1:
        return " ".join(groups[0])
    return " | ".join(group[0] if len(group) == 1 else f"({' '.join(group)})" for group in groups)


def _millis(value: datetime) -> int:
    return (value - _EPOCH) // timedelta(milliseconds=1)


def build_filters(*, tenant_id: int | None, filters: dict) -> list[dict]:
    """The list filters as Elasticsearch filter clauses; ``tenant`` is the first, unless the
    search is a superuser's of every tenant (``tenant_id`` None)."""
    clauses: list[dict] = [] if tenant_id is None else [{"term": {"tenant": tenant_id}}]
    for name in TERM_FILTERS:
        if filters.get(name):
            clauses.append({"term": {name: filters[name]}})
    action = filters.get("action")
    if action:
        if action.endswith("*"):
            clauses.append({"prefix": {"action": action[:-1]}})
        else:
            clauses.append({"term": {"action": action}})
    occurred = {}
    # Same bounds as AuditEventFilterSet: after is inclusive, before exclusive. In UTC, as
    # there: RFC 3339 allows offsets up to ±23:59, Java's date parser none beyond ±18:00.
    if filters.get("occurred_after"):
        occurred["gte"] = filters["occurred_after"].astimezone(UTC).isoformat()
    if filters.get("occurred_before"):
        occurred["lt"] = filters["occurred_before"].astimezone(UTC).isoformat()
    if occurred:
        clauses.append({"range": {"occurred_at": occurred}})
    return clauses


def build_search_body(request: SearchRequest) -> dict:
    body = {
        "query": {
            "bool": {
                "must": [
                    {
                        "simple_query_string": {
                            "query": user_query_to_simple_query_string(request.q),
                            "fields": QUERY_FIELDS,
                            # websearch_to_tsquery ANDs the words; so do we.
                            "default_operator": "and",
                            "flags": QUERY_FLAGS,
                        }
                    }
                ],
                "filter": build_filters(tenant_id=request.tenant_id, filters=request.filters),
            }
        },
        "sort": [{"_score": "desc"}, {"occurred_at": "desc"}, {"id": "desc"}],
        "size": request.page_size + 1,
        "_source": False,
        "track_total_hits": False,
    }
    if request.cursor:
        score, occurred_at, event_id = cursor_values(request.cursor, ElasticsearchBackend.name)
        body["search_after"] = [score, _millis(occurred_at), event_id]
    return body


@lru_cache(maxsize=4)
def _client_for(url: str, timeout: float) -> Elasticsearch:
    # No client-side retries: the breaker decides, and a search must answer within the timeout.
    return Elasticsearch(url, request_timeout=timeout, max_retries=0, retry_on_timeout=False)


# Bulk writes and index administration may legitimately take longer than a search; they run
# in the sweep and commands, never in a request. The index task of each ingest, which shares
# the worker processes with ingestion, waits TRACELEDGER_SEARCH_INDEX_TIMEOUT instead.
WRITE_TIMEOUT = 30.0


def es_client(*, write: bool = False) -> Elasticsearch:
    """The search client (``TRACELEDGER_SEARCH_TIMEOUT``), or with ``write`` the one for bulk
    and index administration."""
    timeout = WRITE_TIMEOUT if write else settings.TRACELEDGER_SEARCH_TIMEOUT
    return _client_for(settings.ELASTICSEARCH_URL, timeout)


class ElasticsearchBackend:
    name = "elasticsearch"

    def search(self, request: SearchRequest) -> SearchPage:
        from search.breaker import es_call

        body = build_search_body(request)
        # Only the Elasticsearch round-trip goes through the breaker, not the PostgreSQL read.
        response = es_call(es_client().search, index=INDEX_ALIAS, body=body)
        hits = response["hits"]["hits"]
        has_more = len(hits) > request.page_size
        hits = hits[: request.page_size]
        ids = [hit["_id"] for hit in hits]
        by_id = {str(event.id): event for event in request.queryset.filter(id__in=ids)}
        # A hit PostgreSQL does not return (filtered out, other tenant) is dropped, never shown.
        events = [by_id[i] for i in ids if i in by_id]
        scores = [float(hit["_score"] or 0.0) for hit in hits if hit["_id"] in by_id]
        next_cursor = None
        if has_more and hits:
            last = hits[-1]
            next_cursor = {
                "b": self.name,
                "s": last["sort"][0],
                "t": (_EPOCH + timedelta(milliseconds=last["sort"][1])).isoformat(),
                "i": last["sort"][2],
            }
        return SearchPage(backend=self.name, events=events, scores=scores, next_cursor=next_cursor)

    def index_events(
        self,
        *,
        event_ids: list[str],
        overwrite: bool = False,
        index: str | None = None,
        timeout: float | None = None,
    ) -> int:
        """Bulk index; raises on any failed item so the caller retries (ids are idempotent).

        ``timeout``: the longest each bulk request may wait, instead of ``WRITE_TIMEOUT``."""
        if not event_ids:
            return 0
        events = AuditEvent.objects.filter(id__in=event_ids).order_by("tenant_id", "sequence")
        actions = list(AuditEventDocument().get_actions(events, "index"))
        options = {"refresh": False, "raise_on_error": False}
        if index:  # a full rebuild writes into the new concrete index before the alias swap
            for action in actions:
                action["_index"] = index
        else:
            # Never let a write auto-create a concrete index with a guessed mapping.
            options["require_alias"] = True
        from search.breaker import es_call

        # Through the breaker: an open one fails at once, and failures count towards it.
        return es_call(_bulk, actions, options, timeout)


def _bulk(actions: list[dict], options: dict, timeout: float | None) -> int:
    client = es_client(write=True)
    if timeout is not None:
        client = client.options(request_timeout=timeout)  # same connections, shorter wait
    ok, errors = helpers.bulk(client, actions, **options)
    if errors:
        raise BulkIndexError(f"{len(errors)} of {len(actions)} documents failed: {errors[:3]}")
    return ok


class BulkIndexError(RuntimeError):
    pass


def index_name_for_rebuild() -> str:
    return f"{INDEX_ALIAS}-{datetime.now(UTC):%Y%m%d%H%M%S%f}"


def index_create(*, name: str) -> None:
    """Create a concrete index with the document's settings and mapping (if missing)."""
    client = es_client(write=True)
    if not client.indices.exists(index=name):
        client.indices.create(index=name, **AuditEventDocument._index.to_dict())


def alias_indices() -> list[str]:
    client = es_client(write=True)
    if not client.indices.exists_alias(name=INDEX_ALIAS):
        return []
    return sorted(client.indices.get_alias(name=INDEX_ALIAS).keys())


def alias_ensure() -> None:
    """Make sure the alias exists (first run): a fresh concrete index behind it. Through the
    breaker, like every call to Elasticsearch outside a rebuild."""
    from search.breaker import es_call

    es_call(_alias_ensure)


def _alias_ensure() -> None:
    if alias_indices():
        return
    if es_client(write=True).indices.exists(index=INDEX_ALIAS):
        raise RuntimeError(
            f"{INDEX_ALIAS!r} is a concrete index, not an alias: run reindex_search to rebuild"
        )
    name = index_name_for_rebuild()
    index_create(name=name)
    es_client(write=True).indices.put_alias(index=name, name=INDEX_ALIAS)


def alias_swap(*, new_index: str) -> list[str]:
    """Point the alias at ``new_index`` in one atomic step; returns the indices it left."""
    old = [name for name in alias_indices() if name != new_index]
    actions = [{"remove": {"index": name, "alias": INDEX_ALIAS}} for name in old]
    actions.append({"add": {"index": new_index, "alias": INDEX_ALIAS}})
    es_client(write=True).indices.update_aliases(actions=actions)
    return old
