"""The PostgreSQL full-text backend, through the API, against the real database."""

from datetime import timedelta

import pytest

from audit.tests.factories import BASE_TIME
from search.backends.postgresql import QUERY_NO_WORDS
from search.tests.conftest import found

pytestmark = pytest.mark.django_db


def _one(indexed, event_id, **fields):
    return indexed(event_id=event_id, **fields)[0]


def test_it_finds_events_that_contain_every_word(indexed, search_get):
    _one(indexed, "both", description="Exported the payroll report")
    _one(indexed, "one", description="Exported the sales report")
    assert found(search_get("payroll report")) == ["both"]


def test_it_matches_word_forms_through_stemming(indexed, search_get):
    _one(indexed, "stem", description="Alice exported the payroll report")
    assert found(search_get("export payrolls")) == ["stem"]


def test_it_matches_a_quoted_phrase_only_in_that_order(indexed, search_get):
    _one(indexed, "phrase", description="the payroll report was exported")
    _one(indexed, "apart", description="the report on payroll was exported")
    assert found(search_get('"payroll report"')) == ["phrase"]


def test_it_matches_either_word_with_or(indexed, search_get):
    _one(indexed, "payroll", description="payroll exported")
    _one(indexed, "pension", description="pension exported")
    _one(indexed, "neither", description="contract exported")
    assert sorted(found(search_get("payroll OR pension"))) == ["payroll", "pension"]


def test_it_leaves_out_events_with_an_excluded_word(indexed, search_get):
    _one(indexed, "kept", description="payroll exported by Alice")
    _one(indexed, "dropped", description="payroll exported by Mallory")
    assert found(search_get("payroll -mallory")) == ["kept"]


def test_it_searches_action_actor_target_and_metadata_text(indexed, search_get):
    _one(indexed, "by-action", action="payroll.export", description="")
    _one(indexed, "by-actor", actor_name="Grace Hopper", description="")
    _one(indexed, "by-target", target_name="Quarterly ledger", description="")
    _one(indexed, "by-metadata", metadata={"reason": {"note": "zanzibar audit"}}, description="")
    assert found(search_get("payroll")) == ["by-action"]
    assert found(search_get("hopper")) == ["by-actor"]
    assert found(search_get("quarterly")) == ["by-target"]
    assert found(search_get("zanzibar")) == ["by-metadata"]


def test_an_earlier_search_is_not_found_by_the_words_it_searched_for(indexed, search_get):
    """A person's search is recorded with its text in metadata; indexed, every search for
    "payroll" would find the records of earlier searches for "payroll"."""
    _one(indexed, "real", description="payroll exported")
    _one(
        indexed,
        "record",
        action="audit_log.search",
        submitted_by="traceledger",
        description="Ada searched the audit log",
        metadata={"filters": {"q": "payroll zanzibar"}, "endpoint": "search"},
    )
    assert found(search_get("payroll")) == ["real"]
    assert found(search_get("zanzibar")) == []
    assert found(search_get("searched")) == ["record"]


def test_a_clients_event_named_like_an_access_record_is_searched_like_any(indexed, search_get):
    """An ingest key may post "audit_log.export" in its tenant: its metadata was left out of
    the index as if TraceLedger had written it (tenant isolation QA)."""
    _one(
        indexed,
        "forged",
        action="audit_log.export",
        submitted_by="api_key:ph9mMuy4",
        metadata={"wire": "zzqqtoken transfer"},
    )
    assert found(search_get("zzqqtoken")) == ["forged"]


def test_it_ranks_an_action_match_above_a_description_match(indexed, search_get):
    _one(indexed, "in-description", description="payroll changed", occurred_at=BASE_TIME)
    _one(
        indexed,
        "in-action",
        action="payroll.export",
        description="",
        occurred_at=BASE_TIME - timedelta(days=1),
    )
    assert found(search_get("payroll")) == ["in-action", "in-description"]


def test_it_breaks_ties_newest_first(indexed, search_get):
    for i, name in enumerate(["old", "new", "mid"]):
        offset = {"old": 0, "new": 2, "mid": 1}[name]
        _one(
            indexed,
            name,
            description="payroll exported",
            occurred_at=BASE_TIME + timedelta(minutes=offset, microseconds=i),
        )
    assert found(search_get("payroll")) == ["new", "mid", "old"]


def test_it_pages_with_a_cursor_without_repeating_or_skipping(indexed, search_get, key_client):
    indexed(count=7, description="payroll exported")
    seen, response = [], search_get("payroll", page_size=3)
    pages = 0
    while True:
        seen += found(response)
        pages += 1
        next_url = response.json()["next"]
        if next_url is None:
            break
        response = key_client(scopes=["read"]).get(next_url)
    assert pages == 3
    assert len(seen) == len(set(seen)) == 7


def test_it_does_not_find_another_tenants_events(indexed, search_get, other_tenant, key_client):
    _one(indexed, "mine", description="payroll exported")
    _one(indexed, "theirs", description="payroll exported", tenant_id=other_tenant.pk)
    assert found(search_get("payroll")) == ["mine"]
    outsider = key_client(scopes=["read"], for_tenant=other_tenant)
    assert found(search_get("payroll", client=outsider)) == ["theirs"]


FILTER_CASES = [
    ("actor_id", "alice", {"actor_id": "alice"}, {"actor_id": "bob"}),
    ("actor_type", "service", {"actor_type": "service"}, {"actor_type": "user"}),
    ("action", "payroll.export", {"action": "payroll.export"}, {"action": "payroll.exported"}),
    ("action", "payroll.*", {"action": "payroll.export"}, {"action": "invoice.payroll"}),
    ("target_type", "report", {"target_type": "report"}, {"target_type": "invoice"}),
    ("target_id", "r-1", {"target_id": "r-1"}, {"target_id": "r-2"}),
    ("outcome", "failure", {"outcome": "failure"}, {"outcome": "success"}),
    ("severity", "critical", {"severity": "critical"}, {"severity": "info"}),
    (
        "occurred_after",
        BASE_TIME.isoformat(),
        {"occurred_at": BASE_TIME},
        {"occurred_at": BASE_TIME - timedelta(seconds=1)},
    ),
    (
        "occurred_before",
        BASE_TIME.isoformat(),
        {"occurred_at": BASE_TIME - timedelta(seconds=1)},
        {"occurred_at": BASE_TIME},
    ),
]


@pytest.mark.parametrize(
    ("name", "value", "matching", "other"),
    FILTER_CASES,
    ids=[f"{case[0]}={case[1]}" for case in FILTER_CASES],
)
def test_it_applies_each_list_filter(indexed, search_get, name, value, matching, other):
    _one(indexed, "match", description="payroll exported", **matching)
    _one(indexed, "other", description="payroll exported", **other)
    assert sorted(found(search_get("payroll"))) == ["match", "other"]
    assert found(search_get("payroll", **{name: value})) == ["match"]


@pytest.mark.parametrize("q", ["the", "🚀", "*", ":*", "- -"])
def test_a_text_without_a_word_it_indexes_is_named_not_answered_with_nothing(
    indexed, search_get, q
):
    """Stop words, emoji and operators alone make an empty query: "no results" read as
    "no such events" (1,634 events held the 🚀 searched for)."""
    _one(indexed, "any", description=f"the payroll {q}")

    response = search_get(q)

    assert response.status_code == 400
    assert response.json()["error"]["fields"]["q"] == [QUERY_NO_WORDS]


def test_the_upgrade_reindexes_client_events_named_like_access_records(indexed, search_get):
    """Migration 0004: entries made by the old recipe, without such an event's metadata,
    are made again; TraceLedger's own records stay without theirs."""
    import importlib

    from django.db import connection

    from search.models import EventSearchEntry

    migration = importlib.import_module("search.migrations.0004_client_access_action_metadata")
    forged = _one(
        indexed,
        "forged",
        action="audit_log.export",
        submitted_by="api_key:x",
        metadata={"wire": "zzqqtoken"},
    )
    _one(
        indexed,
        "record",
        action="audit_log.search",
        submitted_by="traceledger",
        metadata={"filters": {"q": "zzqqtoken"}},
    )
    # As the old recipe left it: no metadata in the vector.
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE search_eventsearchentry SET vector = to_tsvector('english', 'stale') "
            "WHERE event_id = %s",
            [forged.pk],
        )
    assert found(search_get("zzqqtoken")) == []

    with connection.cursor() as cursor:
        cursor.execute(migration.REINDEX_CLIENT_ACCESS_ACTIONS)

    assert found(search_get("zzqqtoken")) == ["forged"]
    assert EventSearchEntry.objects.count() == 2
