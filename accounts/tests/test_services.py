"""Account services announce every change (account_changed) after commit, without secrets."""

import logging

import pytest
from django.core.exceptions import ValidationError

from accounts.models import Role
from accounts.services import (
    actor_for_user,
    api_key_create,
    api_key_revoke,
    tenant_get_or_create,
    user_save,
)
from accounts.signals import account_changed


@pytest.fixture
def announced():
    """Collects account_changed sends (run the code under django_capture_on_commit_callbacks)."""
    seen: list[dict] = []

    def listen(sender, **kwargs):
        seen.append(kwargs)

    account_changed.connect(listen, dispatch_uid="test-announced")
    yield seen
    account_changed.disconnect(dispatch_uid="test-announced")


@pytest.mark.django_db
def test_it_announces_a_new_tenant_once(db, django_capture_on_commit_callbacks):
    seen = []
    account_changed.connect(lambda sender, **kw: seen.append(kw), dispatch_uid="t1", weak=False)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            tenant, created = tenant_get_or_create(slug="initech", name="Initech")
            _, created_again = tenant_get_or_create(slug="initech")
    finally:
        account_changed.disconnect(dispatch_uid="t1")
    assert (created, created_again) == (True, False)
    assert [e["action"] for e in seen] == ["tenant.create"]
    assert seen[0]["tenant_id"] == tenant.pk
    assert seen[0]["actor_type"] == "system"


@pytest.mark.django_db
@pytest.mark.parametrize("slug", ["", "a b", "x" * 65, "ü"])
def test_it_refuses_a_bad_slug_naming_the_field(slug):
    with pytest.raises(ValidationError) as exc:
        tenant_get_or_create(slug=slug)
    assert "slug" in exc.value.message_dict


@pytest.mark.django_db
def test_it_announces_key_creation_and_revocation_by_prefix_only(
    tenant, owner, announced, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        api_key, key = api_key_create(
            tenant=tenant, name="ci", scopes=["read", "ingest", "read"], actor=actor_for_user(owner)
        )
    assert api_key.scopes == ["ingest", "read"]
    with django_capture_on_commit_callbacks(execute=True):
        assert api_key_revoke(api_key=api_key, actor=actor_for_user(owner)) is True
        assert api_key_revoke(api_key=api_key) is False  # nothing to announce the second time
    assert [e["action"] for e in announced] == ["api_key.create", "api_key.revoke"]
    for event in announced:
        assert event["target_id"] == api_key.prefix
        assert event["actor_id"] == str(owner.pk)
        text = repr(event)
        assert key.partition(".")[2] not in text
        assert api_key.hashed_key.partition("$$")[2][:32] not in text


@pytest.mark.django_db
def test_it_announces_a_role_change(teammate, owner, announced, django_capture_on_commit_callbacks):
    teammate.role = Role.ADMIN
    with django_capture_on_commit_callbacks(execute=True):
        user_save(
            user=teammate, created=False, changed_fields=["role"], actor=actor_for_user(owner)
        )
    [event] = announced
    assert event["action"] == "user.role_change"
    assert event["metadata"]["role"] == "admin"
    assert event["metadata"]["changed"] == ["role"]


@pytest.mark.django_db
def test_it_logs_but_does_not_raise_when_recording_fails(
    tenant, caplog, django_capture_on_commit_callbacks
):
    def broken(sender, **kwargs):
        raise RuntimeError("broker and database both gone")

    account_changed.connect(broken, dispatch_uid="test-broken")
    try:
        with (
            caplog.at_level(logging.ERROR, logger="accounts.signals"),
            django_capture_on_commit_callbacks(execute=True),
        ):
            api_key, _ = api_key_create(tenant=tenant, name="x", scopes=["read"])
    finally:
        account_changed.disconnect(dispatch_uid="test-broken")
    assert api_key.pk
    assert any("not recorded" in r.getMessage() for r in caplog.records)
