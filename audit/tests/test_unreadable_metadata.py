"""A row whose metadata Python cannot decode (edited in the database) is shown and named,
never a 500: the list, the event, the export and every verifier still answer."""

import json
from io import StringIO

import pytest
from django.core.cache import cache
from django.core.management import call_command

from audit.ledger.verify import ledger_verify
from audit.models import AuditEvent
from audit.models.fields import UNREADABLE_KEY, UnreadableJSON
from audit.tests.ledger_factories import chained_events_create, events_tamper

pytestmark = pytest.mark.django_db

# What jsonb takes and Python's json module does not: an integer beyond int()'s 4,300
# digits, and arrays nested beyond the recursion limit.
UNREADABLE = {
    "digits": ("jsonb_build_object('n', repeat('9', 5000)::jsonb)", "4300 digits"),
    "depth": (
        "jsonb_build_object('a', (repeat('[', 5000) || repeat(']', 5000))::jsonb)",
        "nested too deeply",
    ),
}


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()


@pytest.fixture(params=sorted(UNREADABLE))
def tampered(request, tenant):
    """A chain of 6 whose event 4's metadata was replaced in the database."""
    chained_events_create(tenant_id=tenant.id, count=6)
    sql, reason = UNREADABLE[request.param]
    events_tamper(
        f"UPDATE audit_auditevent SET metadata = {sql} WHERE tenant_id = %s AND sequence = 4",
        [tenant.id],
    )
    return AuditEvent.objects.get(tenant=tenant, sequence=4), reason


def test_the_row_reads_back_as_a_marked_object_saying_why(tampered):
    event, reason = tampered
    assert isinstance(event.metadata, UnreadableJSON)
    assert reason in event.metadata[UNREADABLE_KEY]


def test_every_verifier_names_the_event_and_says_why(tampered, tenant, key_client):
    _, reason = tampered

    result = ledger_verify(tenant_id=tenant.id)
    assert (result.ok, result.first_bad_sequence, result.checked) == (False, 4, 3)
    assert reason in result.reason

    response = key_client(scopes=("read",)).get("/api/v1/ledger/verify")
    assert response.status_code == 200
    assert (response.json()["ok"], response.json()["first_bad_sequence"]) == (False, 4)

    out = StringIO()
    with pytest.raises(SystemExit) as exit_:
        call_command("verify_ledger", "--tenant", tenant.slug, stdout=out, stderr=StringIO())
    assert exit_.value.code == 1
    assert "4" in out.getvalue() and reason in out.getvalue()


def test_the_list_the_event_and_the_export_still_answer(tampered, key_client):
    event, reason = tampered
    reader = key_client(scopes=("read",))

    listed = reader.get("/api/v1/audit-events")
    assert listed.status_code == 200
    [shown] = [e for e in listed.json()["results"] if e["id"] == str(event.pk)]
    assert reason in shown["metadata"][UNREADABLE_KEY]

    detail = reader.get(f"/api/v1/audit-events/{event.pk}")
    assert detail.status_code == 200
    assert reason in detail.json()["metadata"][UNREADABLE_KEY]

    export = reader.get("/api/v1/audit-events/export", {"format": "jsonl"})
    assert export.status_code == 200
    lines = b"".join(export.streaming_content).decode().split("\n")
    documents = [json.loads(line) for line in lines if line]
    assert len(documents) == 6
    [exported] = [d for d in documents if d["id"] == str(event.pk)]
    assert reason in exported["metadata"][UNREADABLE_KEY]
