import uuid

from django.db import migrations, models

import postroom.lib.ids


def fill_event_codes(apps, schema_editor):
    Event = apps.get_model("tracking", "Event")
    for event in Event.objects.filter(code=None).only("id").iterator(chunk_size=2000):
        Event.objects.filter(pk=event.pk).update(code=uuid.uuid4())


class Migration(migrations.Migration):
    dependencies = [
        ("tracking", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="event",
            name="code",
            field=models.UUIDField(null=True, editable=False),
        ),
        migrations.RunPython(fill_event_codes, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="event",
            name="code",
            field=models.UUIDField(default=postroom.lib.ids.uuid7, editable=False, unique=True),
        ),
    ]
