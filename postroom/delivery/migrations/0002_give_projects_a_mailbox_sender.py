from django.db import migrations


def create_mailbox_senders(apps, schema_editor):
    Project = apps.get_model("accounts", "Project")
    Sender = apps.get_model("delivery", "Sender")
    for project in Project.objects.exclude(senders__is_default=True):
        Sender.objects.create(
            project=project,
            name="Mailbox",
            kind="mailbox",
            is_default=True,
            from_email="postroom@localhost.localdomain",
            from_name=" ".join(project.name.split())[:100],
        )


class Migration(migrations.Migration):
    dependencies = [("delivery", "0001_initial"), ("accounts", "0001_initial")]

    operations = [migrations.RunPython(create_mailbox_senders, migrations.RunPython.noop)]
