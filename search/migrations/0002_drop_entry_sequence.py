# The copy of the event's sequence was never read (the events table has it): dropped.

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("search", "0001_initial"),
    ]

    operations = [
        migrations.RemoveField(
            model_name="eventsearchentry",
            name="sequence",
        ),
    ]
