"""The ledger's other two tables get the events table's protection (0003, 0007).

- ``audit_checkpoint`` is append-only: a signed checkpoint is the evidence that catches a
  rewritten chain, so a role allowed DML on the table could erase it with one DELETE.
- ``audit_chainhead`` only moves forward: a head set back (or deleted) lets the next
  transaction append a second event at a sequence that exists, and one that skips the
  chain's tail makes the workers build on a forged link. The worker only ever advances it.

TRUNCATE stays possible for the owner where the database allows it (the test suite's, as
for events). A database owner can still disable the triggers: checkpoints kept elsewhere,
verified offline, are what catch that (README, "The ledger").

And ``traceledger_purge_events`` is no longer executable by every role (PUBLIC): only the
owner's DELETE passes the events trigger anyway, so nobody else needs to call it.
"""

from django.db import migrations

FORWARD = r"""
CREATE OR REPLACE FUNCTION traceledger_ledger_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE'
       AND pg_has_role(current_user, (SELECT relowner FROM pg_class WHERE oid = TG_RELID), 'MEMBER')
       AND current_setting('traceledger.allow_truncate', true) = 'on' THEN
        RETURN NULL;
    END IF;
    IF TG_TABLE_NAME = 'audit_chainhead' THEN
        IF TG_OP = 'UPDATE' THEN
            IF NEW.tenant_id = OLD.tenant_id AND NEW.sequence > OLD.sequence THEN
                RETURN NEW;
            END IF;
        END IF;
        RAISE EXCEPTION 'audit_chainhead only moves forward: % refused', TG_OP
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Only the ingest worker advances a chain head, by appending events.';
    END IF;
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'Signed checkpoints are evidence: they are never changed or removed.';
END
$$;

CREATE TRIGGER checkpoint_append_only
    BEFORE UPDATE OR DELETE ON audit_checkpoint
    FOR EACH ROW EXECUTE FUNCTION traceledger_ledger_guard();
CREATE TRIGGER checkpoint_no_truncate
    BEFORE TRUNCATE ON audit_checkpoint
    FOR EACH STATEMENT EXECUTE FUNCTION traceledger_ledger_guard();

CREATE TRIGGER chainhead_forward_only
    BEFORE UPDATE OR DELETE ON audit_chainhead
    FOR EACH ROW EXECUTE FUNCTION traceledger_ledger_guard();
CREATE TRIGGER chainhead_no_truncate
    BEFORE TRUNCATE ON audit_chainhead
    FOR EACH STATEMENT EXECUTE FUNCTION traceledger_ledger_guard();

REVOKE EXECUTE ON FUNCTION traceledger_purge_events(bigint, bigint) FROM PUBLIC;
"""

REVERSE = r"""
GRANT EXECUTE ON FUNCTION traceledger_purge_events(bigint, bigint) TO PUBLIC;
DROP TRIGGER IF EXISTS chainhead_no_truncate ON audit_chainhead;
DROP TRIGGER IF EXISTS chainhead_forward_only ON audit_chainhead;
DROP TRIGGER IF EXISTS checkpoint_no_truncate ON audit_checkpoint;
DROP TRIGGER IF EXISTS checkpoint_append_only ON audit_checkpoint;
DROP FUNCTION IF EXISTS traceledger_ledger_guard();
"""


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0008_event_submitted_by"),
    ]

    operations = [migrations.RunSQL(FORWARD, REVERSE)]
