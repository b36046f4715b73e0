"""The events table is append-only, enforced by PostgreSQL rather than by application code.

A trigger refuses UPDATE, DELETE and TRUNCATE on ``audit_auditevent``. The one way to
remove rows is ``traceledger_purge_events(tenant, through_sequence)``, which deletes a
prefix of one tenant's chain with the transaction-local flag ``traceledger.purge`` set
(``manage.py purge_events`` calls it and signs a purge checkpoint). A database owner can
still disable the trigger: signed checkpoints kept elsewhere are what catch that (README).

TRUNCATE is allowed only where the database itself says so
(``ALTER DATABASE … SET traceledger.allow_truncate = 'on'``): the test suite's database,
which Django empties with TRUNCATE between transactional tests.
"""

from django.db import migrations

FORWARD = r"""
CREATE OR REPLACE FUNCTION traceledger_auditevent_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('traceledger.purge', true) = 'on' THEN
        RETURN OLD;
    END IF;
    IF TG_OP = 'TRUNCATE' AND current_setting('traceledger.allow_truncate', true) = 'on' THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'audit_auditevent is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'Old events are removed only by manage.py purge_events.';
END
$$;

CREATE TRIGGER auditevent_append_only
    BEFORE UPDATE OR DELETE ON audit_auditevent
    FOR EACH ROW EXECUTE FUNCTION traceledger_auditevent_append_only();

CREATE TRIGGER auditevent_no_truncate
    BEFORE TRUNCATE ON audit_auditevent
    FOR EACH STATEMENT EXECUTE FUNCTION traceledger_auditevent_append_only();

CREATE OR REPLACE FUNCTION traceledger_purge_events(p_tenant_id bigint, p_through bigint)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    removed bigint;
BEGIN
    -- Transaction-local, and switched off again before returning: the flag covers exactly
    -- this one DELETE of a chain prefix, nothing else the caller's transaction does.
    PERFORM set_config('traceledger.purge', 'on', true);
    DELETE FROM audit_auditevent WHERE tenant_id = p_tenant_id AND sequence <= p_through;
    GET DIAGNOSTICS removed = ROW_COUNT;
    PERFORM set_config('traceledger.purge', 'off', true);
    RETURN removed;
END
$$;
"""

REVERSE = r"""
DROP FUNCTION IF EXISTS traceledger_purge_events(bigint, bigint);
DROP TRIGGER IF EXISTS auditevent_no_truncate ON audit_auditevent;
DROP TRIGGER IF EXISTS auditevent_append_only ON audit_auditevent;
DROP FUNCTION IF EXISTS traceledger_auditevent_append_only();
"""


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0002_outbox_deadletters_ledger"),
    ]

    operations = [migrations.RunSQL(FORWARD, REVERSE)]
