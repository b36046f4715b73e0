"""The longest search the API accepts fits gunicorn's request line, and so does its `next`."""

import http.client
import urllib.parse

import orjson
import pytest

from accounts.services import api_key_create
from audit.tests.factories import events_create
from search.api.views import MAX_QUERY_LENGTH
from search.backends.postgresql import PostgresBackend


def _get(port: int, key: str, target: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    conn.request("GET", target, headers={"Authorization": f"Api-Key {key}"})
    response = conn.getresponse()
    status, body = response.status, response.read()
    conn.close()
    return status, body


@pytest.mark.integration
def test_a_search_of_the_longest_accepted_text_and_its_next_link_get_answers(gunicorn, tenant):
    _, key = api_key_create(tenant=tenant, name="long-search", scopes=["read"])
    events = events_create(tenant_id=tenant.pk, count=2, description="payroll exported")
    PostgresBackend().index_events(event_ids=[str(event.id) for event in events])
    words = "payroll OR "
    q = words + "東" * (MAX_QUERY_LENGTH - len(words))
    query = urllib.parse.urlencode({"q": q, "page_size": 1, "actor_type": "user"})

    status, body = _get(gunicorn, key, f"/api/v1/audit-events/search?{query}")
    assert status == 200, body[:200]
    next_url = urllib.parse.urlsplit(orjson.loads(body)["next"])
    status, body = _get(gunicorn, key, f"{next_url.path}?{next_url.query}")
    assert status == 200, body[:200]
    assert len(orjson.loads(body)["results"]) == 1

    # Four bytes each, twelve once percent-encoded: the longest line a q can make (with one
    # word in it, since a text with none is refused before any search).
    emoji = urllib.parse.urlencode({"q": "payroll " + "🚀" * (MAX_QUERY_LENGTH - 8)})
    assert _get(gunicorn, key, f"/api/v1/audit-events/search?{emoji}")[0] == 200
