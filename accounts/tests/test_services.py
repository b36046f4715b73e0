"""Account services announce every change (account_changed) after commit, without secrets."""

import logging

import pytest
from django.core.exceptions import ValidationError

from accounts.models import ApiKey, Role, Tenant, User
from accounts.services import (
    SYSTEM_TENANT_SLUG,
    actor_for_user,
    api_key_create,
    api_key_revoke,
    tenant_get_or_create,
    tenant_provision,
    tenant_save,
    user_create,
    user_delete,
    user_save,
    users_delete,
)
from accounts.signals import SYSTEM_ACTOR, account_changed, account_changed_send


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
@pytest.mark.parametrize("slug", ["", "a b", "x" * 65, "ü", "Acme", "SYSTEM", "-dash", "_under"])
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
def test_a_change_whose_record_cannot_be_written_is_not_made(tenant):
    """The record commits with the change or neither does (races QA: a process killed after
    the commit left a key created with no record of it)."""

    def broken(sender, **kwargs):
        raise RuntimeError("the outbox row could not be written")

    account_changed.connect(broken, dispatch_uid="test-broken")
    try:
        with pytest.raises(RuntimeError):
            api_key_create(tenant=tenant, name="x", scopes=["read"])
    finally:
        account_changed.disconnect(dispatch_uid="test-broken")
    assert not ApiKey.objects.filter(tenant=tenant).exists()


@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_a_failing_receiver_is_logged_not_raised(tenant, caplog):
    """Autocommit: the change is committed already, a 500 would invite a duplicate retry."""

    def broken(sender, **kwargs):
        raise RuntimeError("broker and database both gone")

    account_changed.connect(broken, dispatch_uid="test-broken")
    try:
        with caplog.at_level(logging.ERROR, logger="accounts.signals"):
            account_changed_send(
                tenant_id=tenant.pk,
                action="user.update",
                actor=SYSTEM_ACTOR,
                target_id="1",
                target_type="user",
            )
    finally:
        account_changed.disconnect(dispatch_uid="test-broken")
    assert any("not recorded" in r.getMessage() for r in caplog.records)


@pytest.mark.django_db
def test_it_refuses_a_tenant_name_longer_than_the_column_naming_the_field(db):
    with pytest.raises(ValidationError) as exc:
        tenant_get_or_create(slug="qaops-n", name="n" * 201)
    assert list(exc.value.message_dict) == ["name"]
    assert not Tenant.objects.filter(slug="qaops-n").exists()
    tenant, _ = tenant_get_or_create(slug="qaops-n", name="n" * 200)
    assert len(tenant.name) == 200


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["", " ", "\t\n "])
def test_it_refuses_a_blank_tenant_name_naming_the_field(tenant, name):
    for create in (tenant_get_or_create, tenant_provision):
        with pytest.raises(ValidationError) as exc:
            create(slug="initech", name=name)
        assert list(exc.value.message_dict) == ["name"]
    assert not Tenant.objects.filter(slug="initech").exists()

    with pytest.raises(ValidationError) as exc:
        tenant_provision(slug=tenant.slug, name=name)
    assert list(exc.value.message_dict) == ["name"]
    tenant.name = name
    with pytest.raises(ValidationError) as exc:
        tenant_save(tenant=tenant, created=False, changed_fields=["name"])
    assert list(exc.value.message_dict) == ["name"]
    assert Tenant.objects.get(pk=tenant.pk).name == "Acme"


@pytest.mark.django_db
def test_it_stores_a_tenant_name_stripped(tenant):
    created, _ = tenant_get_or_create(slug="initech", name="  Initech\t")
    assert created.name == "Initech"
    tenant.name = " Acme Corporation "
    tenant_save(tenant=tenant, created=False, changed_fields=["name"])
    assert Tenant.objects.get(pk=tenant.pk).name == "Acme Corporation"


@pytest.mark.django_db
def test_provisioning_an_existing_tenant_with_another_name_renames_it_through_tenant_save(
    tenant, announced, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        unchanged = tenant_provision(slug=tenant.slug)
        same = tenant_provision(slug=tenant.slug, name=" Acme ")
        renamed = tenant_provision(slug=tenant.slug, name="Acme Corporation")
    assert (unchanged.created, unchanged.previous_name, unchanged.tenant.name) == (
        False,
        None,
        "Acme",
    )
    assert (same.created, same.previous_name) == (False, None)
    assert (renamed.created, renamed.previous_name) == (False, "Acme")
    assert Tenant.objects.get(pk=tenant.pk).name == "Acme Corporation"
    [event] = announced  # only the real rename is recorded, as tenant_save records one
    assert (event["action"], event["tenant_id"]) == ("tenant.update", tenant.pk)
    assert event["metadata"] == {
        "changed": ["name"],
        "name": "Acme Corporation",
        "previous_name": "Acme",
    }


@pytest.mark.django_db
def test_it_reserves_the_system_slug_for_traceledger_itself(db):
    with pytest.raises(ValidationError) as exc:
        tenant_provision(slug=SYSTEM_TENANT_SLUG, name="Mine now")
    assert "reserved" in " ".join(exc.value.message_dict["slug"])
    assert not Tenant.objects.filter(slug=SYSTEM_TENANT_SLUG).exists()
    # TraceLedger's own path (audit's system_tenant_id) creates it, always with its name ...
    tenant, created = tenant_get_or_create(slug=SYSTEM_TENANT_SLUG, name="Mine now")
    assert created and tenant.name == "System"
    # ... and people are refused when it exists, too.
    with pytest.raises(ValidationError):
        tenant_provision(slug=SYSTEM_TENANT_SLUG)


@pytest.mark.django_db
def test_it_gives_the_system_tenant_no_users_and_no_api_keys(db):
    system, _ = tenant_get_or_create(slug=SYSTEM_TENANT_SLUG)
    with pytest.raises(ValidationError) as exc:
        api_key_create(tenant=system, name="backdoor", scopes=["ingest"])
    assert list(exc.value.message_dict) == ["tenant"]
    with pytest.raises(ValidationError) as exc:
        user_create(
            tenant=system, username="mallory", password="violet-Anchor-47-river", role="ingest"
        )
    assert list(exc.value.message_dict) == ["tenant"]
    with pytest.raises(ValidationError):
        user_save(user=User(username="eve", tenant=system), created=True, changed_fields=[])
    assert not ApiKey.objects.filter(tenant=system).exists()
    assert not User.objects.filter(tenant=system).exists()


@pytest.mark.django_db
def test_it_announces_a_deleted_user_in_their_tenant_or_for_the_system_tenant(
    teammate, owner, superuser, announced, django_capture_on_commit_callbacks
):
    teammate_id, superuser_id = teammate.pk, superuser.pk
    with django_capture_on_commit_callbacks(execute=True):
        user_delete(user=teammate, actor=actor_for_user(owner))
        users_delete(users=[superuser], actor=actor_for_user(owner))
    assert not User.objects.filter(pk__in=[teammate_id, superuser_id]).exists()
    deleted = [e for e in announced if e["action"] == "user.delete"]
    assert [(e["action"], e["tenant_id"], e["target_id"]) for e in deleted] == [
        ("user.delete", owner.tenant_id, str(teammate_id)),
        ("user.delete", None, str(superuser_id)),  # None: audit records it in "system"
    ]
    assert deleted[0]["target_name"] == "teammate"
    assert deleted[0]["actor_id"] == str(owner.pk)


@pytest.mark.django_db
def test_it_records_a_tenant_rename_with_the_previous_name(
    tenant, superuser, announced, django_capture_on_commit_callbacks
):
    tenant.name = "Acme Corporation"
    with django_capture_on_commit_callbacks(execute=True):
        tenant_save(
            tenant=tenant, created=False, changed_fields=["name"], actor=actor_for_user(superuser)
        )
        tenant_save(
            tenant=tenant, created=False, changed_fields=[], actor=actor_for_user(superuser)
        )
    [event] = announced
    assert event["action"] == "tenant.update"
    assert event["tenant_id"] == tenant.pk
    assert event["metadata"]["previous_name"] == "Acme"
    assert event["metadata"]["name"] == "Acme Corporation"


def test_the_case_migration_names_clashing_usernames_instead_of_failing_on_the_index(tenant):
    from importlib import import_module

    from django.apps import apps
    from django.core.management.base import CommandError
    from django.db import connection, transaction

    migration = import_module("accounts.migrations.0002_username_unique_ignoring_case")
    with transaction.atomic():
        with connection.cursor() as cursor:  # as before the migration
            cursor.execute("DROP INDEX user_username_unique_ignoring_case")
        User.objects.create(username="ada", tenant=tenant, role="auditor")
        User.objects.create(username="Ada", tenant=tenant, role="auditor")
        with pytest.raises(CommandError, match="all but one of: Ada, ada"):
            migration.refuse_names_differing_only_in_case(apps, None)
        transaction.set_rollback(True)


@pytest.mark.django_db
def test_a_name_taken_between_the_check_and_the_insert_is_named_on_username(tenant, monkeypatch):
    # Two requests creating "Ada" at once: both pass the first check, the loser learns it
    # from the unique constraint (reported for the whole form by Django) or the insert.
    user_create(tenant=tenant, username="ada", password="Correct-horse-9", role=Role.AUDITOR)
    monkeypatch.setattr("accounts.services.users._username_taken", lambda username: False)

    with pytest.raises(ValidationError) as refused:
        user_create(tenant=tenant, username="ADA", password="Correct-horse-9", role=Role.AUDITOR)

    assert refused.value.message_dict == {"username": ["A user with that username already exists."]}
