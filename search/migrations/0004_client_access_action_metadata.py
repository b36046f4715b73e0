"""Index the metadata of client events whose action is one of TraceLedger's access-record
names (``audit_log.read``/``.search``/``.export``).

The vector recipe left out the metadata of every event with such an action; it now leaves out
only TraceLedger's own records (``submitted_by = 'traceledger'``), since an ingest key may post
events with those names too (search/backends/postgresql.py). This re-makes the vectors of the
client's ones, with the recipe as it is written at this migration. Elasticsearch documents:
``manage.py reindex_search --backend elasticsearch``.
"""

from django.db import migrations

REINDEX_CLIENT_ACCESS_ACTIONS = """
    UPDATE search_eventsearchentry s
    SET vector =
        setweight(to_tsvector('english', concat_ws(' ',
            e.action, regexp_replace(e.action, '[._:-]+', ' ', 'g'),
            e.actor_id, e.actor_name, e.target_id, e.target_type, e.target_name)), 'A')
        || setweight(to_tsvector('english', e.description), 'B')
        || setweight(jsonb_to_tsvector('english', e.metadata, '["string"]'), 'C'),
        indexed_at = now()
    FROM audit_auditevent e
    WHERE s.event_id = e.id
      AND e.action IN ('audit_log.read', 'audit_log.search', 'audit_log.export')
      AND e.submitted_by <> 'traceledger'
"""


class Migration(migrations.Migration):
    dependencies = [
        ("search", "0003_purge_cleanup"),
        ("audit", "0008_event_submitted_by"),
    ]

    operations = [
        migrations.RunSQL(REINDEX_CLIENT_ACCESS_ACTIONS, reverse_sql=migrations.RunSQL.noop),
    ]
