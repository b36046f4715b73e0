"""Events keep their tenant without a per-row foreign-key check (issue 9).

The constraint was DEFERRABLE INITIALLY DEFERRED: every inserted event ran an RI check at
COMMIT, while the ingest worker holds the tenant's chain-head lock. Measured on the bench
database (13,325 rows, INSERT … SELECT into a copy of the table with and without it): the
checks took 169-347 ms of 1.2-1.8 s, 15-25 % of inserting. The index on ``tenant_id``
alone is redundant: every other index of the table leads with it.

What the constraint guaranteed is kept another way:

* the ingest worker checks that each tenant exists and locks its row ``FOR KEY SHARE``
  (what the RI check itself locks) in the same transaction as the insert, once per tenant
  instead of once per row (``audit.services.ingest._begin``);
* a tenant that has events cannot be deleted (``on_delete=PROTECT`` in Django, and the
  trigger below for SQL): a concurrent DELETE waits for the worker's lock, then sees its
  rows and is refused.
"""

from django.db import migrations, models
from django.db.models import deletion

FORWARD = r"""
CREATE OR REPLACE FUNCTION traceledger_tenant_keep_events() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM audit_auditevent WHERE tenant_id = OLD.id) THEN
        RAISE EXCEPTION 'tenant % has audit events and cannot be deleted', OLD.id
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN OLD;
END
$$;

CREATE TRIGGER tenant_keep_events
    BEFORE DELETE ON accounts_tenant
    FOR EACH ROW EXECUTE FUNCTION traceledger_tenant_keep_events();
"""

REVERSE = r"""
DROP TRIGGER IF EXISTS tenant_keep_events ON accounts_tenant;
DROP FUNCTION IF EXISTS traceledger_tenant_keep_events();
"""


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0001_initial"),
        ("audit", "0005_read_filter_indexes"),
    ]

    operations = [
        migrations.AlterField(
            model_name="auditevent",
            name="tenant",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=deletion.PROTECT,
                related_name="+",
                to="accounts.tenant",
            ),
        ),
        migrations.RunSQL(FORWARD, REVERSE),
    ]
