"""The events table is append-only at the database: SQL cannot change or remove rows."""

import pytest
from django.db import connection, transaction
from django.db.utils import DatabaseError

from audit.models import AuditEvent
from audit.tests.ledger_factories import chained_events_create


def _sql(statement: str, params=()):
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(statement, params)


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_auditevent SET description = 'rewritten' WHERE tenant_id = %s",
        "UPDATE audit_auditevent SET hash = prev_hash WHERE tenant_id = %s",
        "DELETE FROM audit_auditevent WHERE tenant_id = %s",
    ],
)
def test_it_refuses_an_update_or_delete_through_sql(tenant, statement):
    chained_events_create(tenant_id=tenant.id, count=2)

    with pytest.raises(DatabaseError, match="append-only"):
        _sql(statement, [tenant.id])

    assert AuditEvent.objects.filter(tenant=tenant, description__startswith="Ada").count() == 2


def test_it_refuses_updates_and_deletes_through_the_orm(tenant):
    chained_events_create(tenant_id=tenant.id, count=1)

    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(tenant=tenant).update(action="x.y")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(tenant=tenant).delete()
    assert AuditEvent.objects.filter(tenant=tenant, action="invoice.update").count() == 1


@pytest.mark.django_db(transaction=True)
def test_it_refuses_truncate_unless_the_database_allows_it(tenant):
    # Committed first: PostgreSQL refuses TRUNCATE after an insert in the same transaction.
    chained_events_create(tenant_id=tenant.id, count=1)

    # The test database allows TRUNCATE (conftest) for Django's flush; production does not.
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("SET LOCAL traceledger.allow_truncate = 'off'")
        cursor.execute("TRUNCATE audit_auditevent CASCADE")
    assert AuditEvent.objects.filter(tenant=tenant).count() == 1


def test_the_purge_flag_does_not_outlive_the_purge_function(tenant):
    chained_events_create(tenant_id=tenant.id, count=3)

    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("SELECT traceledger_purge_events(%s, 1)", [tenant.id])
        assert cursor.fetchone() == (1,)
        cursor.execute("DELETE FROM audit_auditevent WHERE tenant_id = %s", [tenant.id])
    assert AuditEvent.objects.filter(tenant=tenant).count() == 3


@pytest.fixture
def delete_only_role(db):
    """A role that may DELETE from the events table but does not own it."""
    import uuid

    name = f"tl_test_deleter_{uuid.uuid4().hex[:8]}"
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE ROLE {name} NOLOGIN")
        cursor.execute(f"GRANT SELECT, DELETE, TRUNCATE ON audit_auditevent TO {name}")
    yield name
    with connection.cursor() as cursor:
        cursor.execute(f"REVOKE ALL ON audit_auditevent FROM {name}")
        cursor.execute(f"DROP ROLE {name}")


@pytest.mark.parametrize(
    ("switch", "statement"),
    [
        ("traceledger.purge", "DELETE FROM audit_auditevent WHERE tenant_id = %s"),
        ("traceledger.allow_truncate", "TRUNCATE audit_auditevent"),
    ],
)
def test_the_switches_do_nothing_for_a_role_that_does_not_own_the_table(
    tenant, delete_only_role, switch, statement
):
    chained_events_create(tenant_id=tenant.id, count=2)
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(f"SET LOCAL ROLE {delete_only_role}")
        cursor.execute(f"SET LOCAL {switch} = 'on'")
        cursor.execute(statement, [tenant.id] if "%s" in statement else [])
    assert AuditEvent.objects.filter(tenant=tenant).count() == 2
