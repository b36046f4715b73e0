"""``metadata`` reads back a row Python cannot decode (edited in the database) as a marked
object instead of raising (``audit.models.fields``). No SQL: the column stays jsonb."""

from django.db import migrations

import audit.models.fields


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0010_stored_at_brin"),
    ]

    operations = [
        migrations.AlterField(
            model_name="auditevent",
            name="metadata",
            field=audit.models.fields.StoredJSONField(blank=True, default=dict),
        ),
    ]
