"""Ledger verification and export count against a tighter limit on top of the read limit."""

import pytest
from django.test import override_settings

pytestmark = pytest.mark.django_db


@override_settings(TRACELEDGER_RATELIMIT_HEAVY="2/m")
@pytest.mark.parametrize(
    "path", ["/api/v1/ledger/verify", "/api/v1/audit-events/export?format=jsonl"]
)
def test_a_loop_of_heavy_reads_is_limited_while_other_reads_go_on(key_client, path):
    client = key_client(scopes=["read"])

    statuses = [client.get(path).status_code for _ in range(3)]
    listing = client.get("/api/v1/audit-events")

    assert 429 not in statuses[:2] and statuses[2] == 429
    assert 1 <= int(client.get(path)["Retry-After"]) <= 60
    assert listing.status_code == 200
