"""Compliance staff see their tenant's signed checkpoints and verify its chain in the admin."""

import random
import time
import types

import django_ratelimit.core
import pytest
from django.urls import reverse

from accounts.models import Tenant
from audit.ledger.services import checkpoint_create
from audit.models import AuditEvent, Checkpoint
from audit.tests.ledger_factories import chained_events_create, events_tamper

CHECKPOINTS = reverse("admin:audit_checkpoint_changelist")
VERIFY = reverse("admin:audit_checkpoint_verify")


@pytest.fixture
def auditor(teammate):
    teammate.is_staff = True
    teammate.save()
    return teammate


def _signed_chain(tenant: Tenant, count: int) -> list[AuditEvent]:
    events = chained_events_create(tenant_id=tenant.pk, count=count)
    last = events[-1]
    checkpoint_create(tenant_id=tenant.pk, sequence=last.sequence, hash=last.hash, kind="periodic")
    return events


def _messages(response) -> list[tuple[str, str]]:
    return [(m.level_tag, str(m)) for m in response.context["messages"]]


def test_staff_see_their_own_tenants_checkpoints_only(client, tenant, other_tenant, auditor):
    _signed_chain(tenant, 3)
    _signed_chain(other_tenant, 2)
    client.force_login(auditor)

    response = client.get(CHECKPOINTS)

    assert response.status_code == 200
    rows = list(response.context["cl"].result_list)
    assert [(c.tenant_id, c.sequence) for c in rows] == [(tenant.pk, 3)]
    body = response.content.decode()
    assert "Verify the chain of acme (last 20,000 events)" in body
    assert client.get(reverse("admin:audit_checkpoint_add")).status_code == 403


def test_verifying_an_intact_chain_says_what_was_checked(client, tenant, auditor):
    _signed_chain(tenant, 5)
    client.force_login(auditor)

    response = client.post(VERIFY, follow=True)

    assert response.redirect_chain[-1][0] == CHECKPOINTS
    assert _messages(response) == [
        (
            "success",
            "Verified the chain of acme, sequences 1 to 5 (5 events) and 1 signed checkpoint(s): "
            "every hash matches its event and links to the one before.",
        )
    ]


def test_a_check_short_of_the_chains_start_points_to_the_whole_chain(
    client, tenant, auditor, monkeypatch
):
    monkeypatch.setattr("audit.admin.checkpoints.VERIFY_MAX_EVENTS", 1)
    _signed_chain(tenant, 3)
    client.force_login(auditor)

    [(_, text)] = _messages(client.post(VERIFY, follow=True))

    assert text.startswith("Verified the chain of acme, sequences 3 to 3 (1 event) and 1 signed")
    assert text.endswith(
        "Older events: manage.py verify_ledger, or an export and the offline tool (docs/ledger.md)."
    )


def test_a_tampered_event_is_named_as_an_error(client, tenant, auditor):
    events = _signed_chain(tenant, 4)
    events_tamper(
        "UPDATE audit_auditevent SET description = 'edited' WHERE id = %s", [events[2].pk]
    )
    client.force_login(auditor)

    [(level, text)] = _messages(client.post(VERIFY, follow=True))

    assert level == "error"
    assert text.startswith("The chain of acme does NOT verify: at sequence 3, ")


def test_a_superuser_chooses_the_tenant_and_another_tenants_staff_cannot_pick_it(
    client, tenant, other_tenant, superuser, outsider
):
    _signed_chain(tenant, 2)
    client.force_login(superuser)

    unchosen = client.get(CHECKPOINTS).content.decode()
    refused = client.post(VERIFY, follow=True)
    chosen = client.post(VERIFY, {"tenant": tenant.pk}, follow=True)

    assert 'id="tl-verify" disabled' in unchosen
    assert _messages(refused) == [("error", "Choose a tenant first (the filter on the right).")]
    assert chosen.redirect_chain[-1][0] == f"{CHECKPOINTS}?tenant={tenant.pk}"
    assert _messages(chosen)[0][1].startswith("Verified the chain of acme, sequences 1 to 2")

    outsider.is_staff = True
    outsider.save()
    client.force_login(outsider)
    # Staff check their own tenant whatever they send.
    [(_, text)] = _messages(client.post(VERIFY, {"tenant": tenant.pk}, follow=True))
    assert text == "The chain of globex holds no events yet: nothing to verify."


def test_verifying_counts_against_the_heavy_budget(client, tenant, auditor, settings, monkeypatch):
    settings.TRACELEDGER_RATELIMIT_HEAVY = "1/m"
    # A window of its own: users' ids (their buckets) repeat in the next run's database.
    later = time.time() + random.randrange(10**6, 10**9)
    monkeypatch.setattr(django_ratelimit.core, "time", types.SimpleNamespace(time=lambda: later))
    _signed_chain(tenant, 2)
    client.force_login(auditor)

    assert _messages(client.post(VERIFY, follow=True))[0][0] == "success"
    [(level, text)] = _messages(client.post(VERIFY, follow=True))

    assert level == "error"
    assert text.startswith("Not verified: you have made as many exports and ledger checks")


def test_staff_who_cannot_see_events_cannot_see_checkpoints(client, tenant, owner):
    from accounts.models import Role

    owner.is_staff, owner.role = True, Role.INGEST
    owner.save()
    client.force_login(owner)

    assert client.get(CHECKPOINTS).status_code == 403
    assert client.post(VERIFY).status_code == 403
    assert Checkpoint.objects.count() == 0
