"""The append-only trigger's two switches (``traceledger.purge`` for DELETE,
``traceledger.allow_truncate`` for TRUNCATE) work only for the table's owner (or a
superuser, a member of every role).

They are ordinary settings: any session can set them. With 0003's trigger, a role granted
DELETE on the table (a reporting or support role, say) could set the flag and delete any
rows, which the docs said only an owner could do. Now the flag of another role is ignored
and the statement refused, as without it.
"""

from django.db import migrations

FORWARD = r"""
CREATE OR REPLACE FUNCTION traceledger_auditevent_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    by_owner boolean := pg_has_role(
        current_user, (SELECT relowner FROM pg_class WHERE oid = TG_RELID), 'MEMBER'
    );
BEGIN
    IF TG_OP = 'DELETE' AND by_owner AND current_setting('traceledger.purge', true) = 'on' THEN
        RETURN OLD;
    END IF;
    IF TG_OP = 'TRUNCATE' AND by_owner
       AND current_setting('traceledger.allow_truncate', true) = 'on' THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'audit_auditevent is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'Old events are removed only by manage.py purge_events.';
END
$$;
"""

REVERSE = r"""
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
"""


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0006_tenant_without_fk_check"),
    ]

    operations = [migrations.RunSQL(FORWARD, REVERSE)]
