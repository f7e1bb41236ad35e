"""Suppressions are matched by a hash of their address, which outlives the address itself: an
erased contact's bounced address stays suppressed (contacts.actions.erase_contact). The hash
replaces the address in the unique constraint, since erased rows all have an empty address."""

import hashlib

from django.db import migrations, models

BATCH = 1000


def fill_email_hashes(apps, schema_editor):
    # The definition of lib.emails.hash_email, frozen here: rows hashed now must keep matching.
    Suppression = apps.get_model("contacts", "Suppression")
    batch = []
    for row in Suppression.objects.filter(email_hash=None).only("id", "email").iterator(BATCH):
        row.email_hash = hashlib.sha256(row.email.encode()).hexdigest()
        batch.append(row)
        if len(batch) == BATCH:
            Suppression.objects.bulk_update(batch, ["email_hash"])
            batch = []
    Suppression.objects.bulk_update(batch, ["email_hash"])


class Migration(migrations.Migration):
    dependencies = [
        ("contacts", "0002_add_trigram_search_indexes"),
    ]

    operations = [
        migrations.AddField(
            model_name="suppression",
            name="email_hash",
            field=models.CharField(max_length=64, null=True),
        ),
        migrations.RunPython(fill_email_hashes, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="suppression",
            name="email_hash",
            field=models.CharField(max_length=64),
        ),
        migrations.RemoveConstraint(
            model_name="suppression",
            name="contacts_suppression_email",
        ),
        migrations.AlterField(
            model_name="suppression",
            name="email",
            field=models.CharField(blank=True, max_length=254),
        ),
        migrations.AddConstraint(
            model_name="suppression",
            constraint=models.UniqueConstraint(
                fields=("project", "email_hash"), name="contacts_suppression_hash"
            ),
        ),
        migrations.AddConstraint(
            model_name="suppression",
            constraint=models.CheckConstraint(
                condition=models.Q(("email_hash", ""), _negated=True),
                name="contacts_suppression_hashed",
            ),
        ),
        migrations.AddIndex(
            model_name="suppression",
            index=models.Index(
                condition=models.Q(("email", "")),
                fields=["project"],
                name="contacts_suppression_erased",
            ),
        ),
    ]
