"""Events keep their tenant without a per-row foreign-key check (migration 0006): a tenant
with events cannot be deleted, and the ingest worker locks its tenants while it inserts."""

import threading

import psycopg
import pytest
from django.db import IntegrityError, connection, transaction

from accounts.models import Tenant
from audit.services.ingest import _begin, events_ingest
from audit.tests.ingest_support import make_event
from audit.tests.ledger_factories import chained_events_create


def _delete_tenant_sql(tenant_id: int) -> None:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM accounts_tenant WHERE id = %s", [tenant_id])


def test_the_events_table_has_no_foreign_key_check_on_its_tenant(db):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_constraint WHERE conrelid = 'audit_auditevent'::regclass "
            "AND contype = 'f'"
        )
        assert cursor.fetchone()[0] == 0


def test_a_tenant_with_events_cannot_be_deleted_even_by_sql(tenant):
    chained_events_create(tenant_id=tenant.id, count=1)
    with pytest.raises(IntegrityError, match="has audit events"):
        _delete_tenant_sql(tenant.id)
    assert Tenant.objects.filter(id=tenant.id).exists()


def test_a_tenant_without_events_can_be_deleted(db):
    tenant = Tenant.objects.create(name="Empty", slug="empty")
    _delete_tenant_sql(tenant.id)
    assert not Tenant.objects.filter(id=tenant.id).exists()


@pytest.mark.django_db(transaction=True)
def test_the_ingest_transaction_holds_its_tenants_until_commit_so_a_delete_waits(tenant):
    """The worker's tenant check locks the row FOR KEY SHARE: a DELETE of that tenant from
    another connection waits for the insert's commit (and then finds events)."""
    params = connection.get_connection_params()
    outcome: dict = {}
    locked, release = threading.Event(), threading.Event()

    def deleter():
        locked.wait(10)
        with psycopg.connect(**{**params, "autocommit": True}) as other:
            other.execute("SET lock_timeout = '300ms'")
            try:
                other.execute("DELETE FROM accounts_tenant WHERE id = %s", [tenant.id])
            except psycopg.errors.LockNotAvailable:
                outcome["delete"] = "waited"
            except psycopg.Error as exc:
                outcome["delete"] = repr(exc)
            else:
                outcome["delete"] = "deleted"
        release.set()

    thread = threading.Thread(target=deleter)
    thread.start()
    with transaction.atomic():
        assert _begin(tenant_ids=[tenant.id]) == {tenant.id}
        locked.set()
        release.wait(10)
    thread.join(10)
    assert outcome["delete"] == "waited"

    # And once events exist, the delete is refused outright.
    events_ingest(tenant_id=tenant.id, events=[make_event(event_id="kept")])
    with pytest.raises(IntegrityError, match="has audit events"):
        _delete_tenant_sql(tenant.id)
