"""The Elasticsearch path without a server: mapping, documents, queries and bulk actions as
dicts built from real stored events, compared to what Elasticsearch must receive."""

from datetime import UTC, datetime

import pytest
from django.http import QueryDict

from audit.filters import AuditEventFilterSet
from audit.models import AuditEvent
from audit.tests.factories import BASE_TIME, events_create
from search.backends.base import SearchRequest
from search.backends.elasticsearch import (
    QUERY_FIELDS,
    build_search_body,
    user_query_to_simple_query_string,
)
from search.documents import INDEX_ALIAS, AuditEventDocument, metadata_text

IDENTIFIER = {"analyzer": "audit_identifier", "type": "text"}


def _keyword_with_words():
    return {"type": "keyword", "fields": {"text": IDENTIFIER}}


def _prose():
    return {
        "type": "text",
        "analyzer": "english",
        "fields": {"raw": {"type": "keyword", "ignore_above": 256}},
    }


def test_it_maps_every_filter_as_a_keyword_and_the_words_as_text():
    assert AuditEventDocument._index.to_dict() == {
        "settings": {
            "number_of_shards": 1,
            "number_of_replicas": 0,
            "refresh_interval": "1s",
            "analysis": {
                "analyzer": {
                    "audit_identifier": {
                        "type": "custom",
                        "tokenizer": "audit_punctuation",
                        "filter": ["lowercase", "asciifolding"],
                    }
                },
                "tokenizer": {
                    "audit_punctuation": {"type": "pattern", "pattern": r"[^\p{L}\p{N}@]+"}
                },
            },
        },
        "mappings": {
            "properties": {
                "id": {"type": "keyword"},
                "tenant": {"type": "long"},
                "event_id": {"type": "keyword"},
                "occurred_at": {"type": "date"},
                "sequence": {"type": "long"},
                "action": _keyword_with_words(),
                "outcome": {"type": "keyword"},
                "severity": {"type": "keyword"},
                "actor_id": _keyword_with_words(),
                "actor_type": {"type": "keyword"},
                "actor_name": _prose(),
                "target_id": _keyword_with_words(),
                "target_type": _keyword_with_words(),
                "target_name": _prose(),
                "description": {"type": "text", "analyzer": "english"},
                "metadata_text": {"type": "text", "analyzer": "english"},
            }
        },
    }


def test_it_turns_off_django_signals_on_the_document():
    assert AuditEventDocument.django.ignore_signals is True
    assert AuditEventDocument.django.auto_refresh is False
    assert INDEX_ALIAS == "traceledger-audit-events"


@pytest.mark.django_db
def test_it_builds_the_document_of_a_stored_event(tenant):
    event = events_create(
        tenant_id=tenant.pk,
        metadata={"report": "payroll", "n": 3, "rows": [{"note": "Q3"}, "final"]},
        description="Ada exported the payroll report",
    )[0]
    stored = AuditEvent.objects.get(pk=event.pk)
    document = AuditEventDocument().prepare(stored)
    # jsonb stores keys in its own order; the words are what matter.
    assert sorted(document.pop("metadata_text").split()) == ["Q3", "final", "payroll"]
    assert document == {
        "id": str(stored.id),
        "tenant": tenant.pk,
        "event_id": stored.event_id,
        "occurred_at": stored.occurred_at,
        "sequence": 1,
        "action": "invoice.update",
        "outcome": "success",
        "severity": "info",
        "actor_id": stored.actor_id,
        "actor_type": "user",
        "actor_name": "Ada Lovelace",
        "target_id": stored.target_id,
        "target_type": "invoice",
        "target_name": "Invoice",
        "description": "Ada exported the payroll report",
    }


@pytest.mark.django_db
def test_an_access_records_filters_are_not_searchable_text(tenant):
    record, forged = events_create(
        tenant_id=tenant.pk,
        count=2,
        action="audit_log.search",
        metadata={"filters": {"q": "payroll"}, "endpoint": "search"},
        per_event=lambda i: {"submitted_by": "traceledger" if i == 0 else "api_key:ph9mMuy4"},
    )
    document = AuditEventDocument().prepare(AuditEvent.objects.get(pk=record.pk))
    assert document["metadata_text"] == ""
    # A client's event of that name is searched like any (tenant isolation QA).
    document = AuditEventDocument().prepare(AuditEvent.objects.get(pk=forged.pk))
    assert document["metadata_text"].split() == ["payroll", "search"]


@pytest.mark.django_db
def test_it_indexes_each_event_under_its_own_id_so_reindexing_overwrites(tenant):
    events = events_create(tenant_id=tenant.pk, count=2)
    stored = list(AuditEvent.objects.filter(tenant=tenant).order_by("sequence"))
    actions = list(AuditEventDocument().get_actions(stored, "index"))
    assert [(a["_op_type"], a["_index"], a["_id"]) for a in actions] == [
        ("index", INDEX_ALIAS, str(events[0].id)),
        ("index", INDEX_ALIAS, str(events[1].id)),
    ]


def test_it_collects_nested_metadata_strings_only():
    assert metadata_text({"a": "x", "b": 1, "c": {"d": ["y", {"e": "z"}], "f": True}}) == "x y z"


@pytest.mark.parametrize(
    ("typed", "sent"),
    [
        ("payroll report", "payroll report"),
        ('"payroll report"', '"payroll report"'),
        ("payroll OR invoice", "payroll | invoice"),
        ("payroll or invoice", "payroll | invoice"),
        ("payroll -mallory", "payroll -mallory"),
        ('"or else" OR x', '"or else" | x'),
        ("a | b + c", "a b c"),
        ('"unclosed phrase', '"unclosed phrase"'),
        # AND binds tighter than OR in websearch_to_tsquery; simple_query_string needs the
        # parentheses to read it so.
        ('"annual report" OR payroll -mallory', '"annual report" | (payroll -mallory)'),
        ("a OR b c", "a | (b c)"),
        ("a b OR c OR d -e", "(a b) | c | (d -e)"),
        ("(a OR b) c", "a | (b c)"),
        ('"(kept) inside" OR x', '"(kept) inside" | x'),
        ("OR payroll OR", "payroll"),
        ("a OR OR b", "a | b"),
        ("", ""),
    ],
)
def test_it_translates_the_user_syntax_for_simple_query_string(typed, sent):
    assert user_query_to_simple_query_string(typed) == sent


# Exclusions: websearch_to_tsquery applies a "-" to the next word or phrase, also across a
# space; Lucene's SimpleQueryParser forgets it at the next space ("payroll - draft" would
# *require* draft), so the translation writes it against its word. Each row: what is typed,
# what Elasticsearch gets, and what PostgreSQL reads (checked below against PostgreSQL).
EXCLUSIONS = [
    (
        'payroll -"annual report"',
        'payroll -"annual report"',
        "'payrol' & !( 'annual' <-> 'report' )",
    ),
    ("payroll -(draft)", "payroll -draft", "'payrol' & !'draft'"),
    ("payroll - draft", "payroll -draft", "'payrol' & !'draft'"),
    ("payroll -\tdraft", "payroll -draft", "'payrol' & !'draft'"),
    ("payroll -|draft", "payroll -draft", "'payrol' & !'draft'"),
    ("payroll -+draft", "payroll -draft", "'payrol' & !'draft'"),
    (
        'alpha OR -"beta gamma" delta',
        'alpha | (-"beta gamma" delta)',
        "'alpha' | !( 'beta' <-> 'gamma' ) & 'delta'",
    ),
    (
        'alpha -"beta gamma" OR delta',
        '(alpha -"beta gamma") | delta',
        "'alpha' & !( 'beta' <-> 'gamma' ) | 'delta'",
    ),
    ("alpha OR - beta", "alpha | -beta", "'alpha' | !'beta'"),
    ("- payroll", "-payroll", "!'payrol'"),
    ('alpha -"beta gamma', 'alpha -"beta gamma"', "'alpha' & !( 'beta' <-> 'gamma' )"),
    ('"alpha beta"-gamma', '"alpha beta" -gamma', "'alpha' <-> 'beta' & !'gamma'"),
    ("alpha -(beta gamma)", "alpha -beta gamma", "'alpha' & !'beta' & 'gamma'"),
    # Two dashes cancel out, in both parsers.
    ("alpha - -beta", "alpha --beta", "'alpha' & !!'beta'"),
    ("alpha - - beta", "alpha --beta", "'alpha' & !!'beta'"),
    # A "-" that ends a word is part of it, not an exclusion.
    ('alpha x-"beta gamma"', 'alpha x- "beta gamma"', "'alpha' & 'x' & 'beta' <-> 'gamma'"),
    # Dangling: nothing after it, an empty phrase, or OR (a negated stop word there).
    ("payroll -", "payroll", "'payrol'"),
    ("payroll - ", "payroll", "'payrol'"),
    ("-", "", ""),
    ('alpha -"" beta', "alpha beta", "'alpha' & 'beta'"),
    ('alpha -"', "alpha", "'alpha'"),
    ("alpha - OR beta", "alpha beta", "'alpha' & 'beta'"),
    ("alpha -OR beta", "alpha beta", "'alpha' & 'beta'"),
    ("alpha - OR - beta", "alpha -beta", "'alpha' & !'beta'"),
]


@pytest.mark.parametrize(("typed", "sent", "postgresql"), EXCLUSIONS)
def test_it_attaches_each_exclusion_to_the_word_or_phrase_after_it(typed, sent, postgresql):
    assert user_query_to_simple_query_string(typed) == sent


@pytest.mark.django_db
def test_postgresql_reads_the_exclusions_as_the_translation_says():
    from django.db import connection

    with connection.cursor() as cursor:
        for typed, _, postgresql in EXCLUSIONS:
            cursor.execute("SELECT websearch_to_tsquery('english', %s)::text", [typed])
            assert cursor.fetchone()[0] == postgresql, typed


def _filters(params: dict) -> dict:
    filterset = AuditEventFilterSet(data=QueryDict(mutable=True) | params)
    assert filterset.is_valid(), filterset.errors
    return filterset.form.cleaned_data


@pytest.mark.django_db
def test_it_builds_the_query_with_every_filter_and_the_tenant(tenant):
    params = {
        "actor_id": "alice",
        "actor_type": "user",
        "action": "payroll.*",
        "target_type": "report",
        "target_id": "r-1",
        "event_id": "inv-7-update-1",
        "outcome": "success",
        "severity": "critical",
        "occurred_after": "2026-03-01T00:00:00Z",
        "occurred_before": "2026-04-01T00:00:00Z",
    }
    request = SearchRequest(
        tenant_id=tenant.pk,
        q='payroll OR "annual report" -draft',
        queryset=AuditEvent.objects.none(),
        filters=_filters(params),
        page_size=20,
    )
    assert build_search_body(request) == {
        "query": {
            "bool": {
                "must": [
                    {
                        "simple_query_string": {
                            "query": 'payroll | ("annual report" -draft)',
                            "fields": QUERY_FIELDS,
                            "default_operator": "and",
                            "flags": "AND|OR|NOT|PHRASE|PRECEDENCE|WHITESPACE",
                        }
                    }
                ],
                "filter": [
                    {"term": {"tenant": tenant.pk}},
                    {"term": {"event_id": "inv-7-update-1"}},
                    {"term": {"actor_id": "alice"}},
                    {"term": {"actor_type": "user"}},
                    {"term": {"target_type": "report"}},
                    {"term": {"target_id": "r-1"}},
                    {"term": {"outcome": "success"}},
                    {"term": {"severity": "critical"}},
                    {"prefix": {"action": "payroll."}},
                    {
                        "range": {
                            "occurred_at": {
                                "gte": "2026-03-01T00:00:00+00:00",
                                "lt": "2026-04-01T00:00:00+00:00",
                            }
                        }
                    },
                ],
            }
        },
        "sort": [{"_score": "desc"}, {"occurred_at": "desc"}, {"id": "desc"}],
        "size": 21,
        "_source": False,
        "track_total_hits": False,
    }


@pytest.mark.django_db
def test_it_filters_only_by_tenant_without_filters_and_exact_action_as_a_term(tenant):
    request = SearchRequest(
        tenant_id=tenant.pk,
        q="payroll",
        queryset=AuditEvent.objects.none(),
        filters=_filters({"action": "payroll.export"}),
    )
    assert build_search_body(request)["query"]["bool"]["filter"] == [
        {"term": {"tenant": tenant.pk}},
        {"term": {"action": "payroll.export"}},
    ]


@pytest.mark.django_db
def test_a_superusers_search_of_every_tenant_has_no_tenant_term():
    request = SearchRequest(
        tenant_id=None,
        q="payroll",
        queryset=AuditEvent.objects.none(),
        filters=_filters({"action": "payroll.*"}),
    )
    assert build_search_body(request)["query"]["bool"]["filter"] == [
        {"prefix": {"action": "payroll."}}
    ]


@pytest.mark.django_db
def test_it_sends_the_time_bounds_in_utc_whatever_offset_the_caller_gave(tenant):
    """Java refuses offsets beyond ±18:00, which RFC 3339 (and the list filter) accepts."""
    request = SearchRequest(
        tenant_id=tenant.pk,
        q="payroll",
        queryset=AuditEvent.objects.none(),
        filters=_filters(
            {
                "occurred_after": "2026-03-01T20:00:00+20:00",
                "occurred_before": "2026-03-01T00:00:00-05:30",
            }
        ),
    )
    assert build_search_body(request)["query"]["bool"]["filter"][-1] == {
        "range": {
            "occurred_at": {
                "gte": "2026-03-01T00:00:00+00:00",
                "lt": "2026-03-01T05:30:00+00:00",
            }
        }
    }


@pytest.mark.django_db
def test_it_continues_after_the_cursor_with_search_after(tenant):
    event = events_create(tenant_id=tenant.pk, occurred_at=BASE_TIME)[0]
    cursor = {
        "b": "elasticsearch",
        "s": 2.5,
        "t": event.occurred_at.isoformat(),
        "i": str(event.id),
    }
    request = SearchRequest(
        tenant_id=tenant.pk, q="x", queryset=AuditEvent.objects.none(), cursor=cursor
    )
    millis = int((BASE_TIME - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds() * 1000)
    assert build_search_body(request)["search_after"] == [2.5, millis, str(event.id)]
