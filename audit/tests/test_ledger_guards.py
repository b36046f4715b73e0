"""Checkpoints are append-only and chain heads only move forward, at the database (0009)."""

import uuid

import pytest
from django.db import connection, transaction
from django.db.utils import DatabaseError

from audit.ledger.services import checkpoints_sign
from audit.models import ChainHead, Checkpoint
from audit.tests.ledger_factories import chained_events_create


def _sql(statement: str, params=()):
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(statement, params)


@pytest.fixture
def signed(tenant):
    chained_events_create(tenant_id=tenant.id, count=3)
    checkpoints_sign()
    return tenant


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_checkpoint SET hash = repeat('a', 64) WHERE tenant_id = %s",
        "UPDATE audit_checkpoint SET sequence = sequence + 1 WHERE tenant_id = %s",
        "DELETE FROM audit_checkpoint WHERE tenant_id = %s",
    ],
)
def test_a_signed_checkpoint_cannot_be_changed_or_removed(signed, statement):
    before = list(Checkpoint.objects.filter(tenant=signed).values())

    with pytest.raises(DatabaseError, match="audit_checkpoint is append-only"):
        _sql(statement, [signed.id])

    assert list(Checkpoint.objects.filter(tenant=signed).values()) == before


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_chainhead SET sequence = sequence - 1 WHERE tenant_id = %s",
        "UPDATE audit_chainhead SET hash = repeat('f', 64) WHERE tenant_id = %s",
        "DELETE FROM audit_chainhead WHERE tenant_id = %s",
    ],
)
def test_a_chain_head_cannot_be_set_back_rewritten_or_removed(signed, statement):
    with pytest.raises(DatabaseError, match="audit_chainhead only moves forward"):
        _sql(statement, [signed.id])

    head = ChainHead.objects.get(tenant=signed)
    assert head.sequence == 3


def test_the_chain_head_still_moves_forward_as_events_are_appended(signed):
    chained_events_create(tenant_id=signed.id, count=2, start=3)

    assert ChainHead.objects.get(tenant=signed).sequence == 5


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("table", ["audit_checkpoint", "audit_chainhead"])
def test_truncate_is_refused_unless_the_database_allows_it(tenant, table):
    chained_events_create(tenant_id=tenant.id, count=1)
    checkpoints_sign()

    with (
        pytest.raises(DatabaseError, match="refused"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("SET LOCAL traceledger.allow_truncate = 'off'")
        cursor.execute(f"TRUNCATE {table}")
    assert Checkpoint.objects.filter(tenant=tenant).exists()
    assert ChainHead.objects.filter(tenant=tenant).exists()


@pytest.fixture
def dml_role(db):
    """A role granted every DML right on the two tables, without owning them."""
    name = f"tl_test_dml_{uuid.uuid4().hex[:8]}"
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE ROLE {name} NOLOGIN")
        cursor.execute(
            f"GRANT SELECT, UPDATE, DELETE, TRUNCATE ON audit_checkpoint, audit_chainhead TO {name}"
        )
    yield name
    with connection.cursor() as cursor:
        cursor.execute(f"REVOKE ALL ON audit_checkpoint, audit_chainhead FROM {name}")
        cursor.execute(f"DROP ROLE {name}")


@pytest.mark.parametrize(
    "statement",
    [
        "DELETE FROM audit_checkpoint WHERE tenant_id = %s",
        "UPDATE audit_chainhead SET sequence = 1 WHERE tenant_id = %s",
        "TRUNCATE audit_checkpoint",
    ],
)
def test_a_role_with_dml_rights_cannot_erase_the_evidence(signed, dml_role, statement):
    with (
        pytest.raises(DatabaseError, match="refused"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(f"SET LOCAL ROLE {dml_role}")
        cursor.execute("SET LOCAL traceledger.allow_truncate = 'on'")
        cursor.execute(statement, [signed.id] if "%s" in statement else [])
    assert Checkpoint.objects.filter(tenant=signed).exists()


def test_only_the_owner_may_call_the_purge_function(dml_role):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT has_function_privilege(%s, 'traceledger_purge_events(bigint, bigint)', "
            "'EXECUTE')",
            [dml_role],
        )
        assert cursor.fetchone() == (False,)
