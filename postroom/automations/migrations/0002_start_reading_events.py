from django.db import migrations
from django.db.models import Max


def start_reading_events(apps, schema_editor):
    # Automations start from events that happen from now on, not from history.
    Event = apps.get_model("tracking", "Event")
    EventCursor = apps.get_model("tracking", "EventCursor")
    newest = Event.objects.aggregate(m=Max("id"))["m"] or 0
    EventCursor.objects.update_or_create(name="automations", defaults={"through_id": newest})


class Migration(migrations.Migration):
    dependencies = [
        ("automations", "0001_initial"),
        ("tracking", "0006_event_time_index"),
    ]

    operations = [migrations.RunPython(start_reading_events, migrations.RunPython.noop)]
