"""A BRIN index on ``stored_at`` for the admin dashboard's ingest lag, which was computed
over the events whose client-given ``occurred_at`` fell in the last 15 minutes: a client
that backfills or runs a skewed clock made it wrong, or empty (operator QA).

Built concurrently: on a large events table a plain CREATE INDEX would hold back ingestion
for the length of the build."""

import django.contrib.postgres.indexes
from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("audit", "0009_checkpoint_and_head_guards"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="auditevent",
            index=django.contrib.postgres.indexes.BrinIndex(
                fields=["stored_at"], name="auditevent_stored_brin"
            ),
        ),
    ]
