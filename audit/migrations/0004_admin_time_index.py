"""A global (occurred_at, id) index for the superuser's admin list and dashboard.

Built CONCURRENTLY: on a live audit table a plain CREATE INDEX would block ingest (every
INSERT) until it finishes. Hence ``atomic = False``.
"""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("audit", "0003_append_only_trigger")]

    operations = [
        AddIndexConcurrently(
            model_name="auditevent",
            index=models.Index(fields=["-occurred_at", "-id"], name="auditevent_time"),
        ),
    ]
