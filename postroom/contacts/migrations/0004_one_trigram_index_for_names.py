"""One trigram index over "first last" instead of one per name (PostgreSQL; nothing on SQLite).

The contacts search looks for its words in the email or in the whole name
(contacts.actions.ContactFilter), so "Ann Lee" finds Ann Lee. Every imported row paid for three
trigram indexes, most of an import's time in the database (bench/import.py); two are enough.
"""

from django.db import migrations

NAME = "contacts_contact_name_trgm"
EXPRESSION = "(UPPER((first_name || ' ' || last_name)::text) gin_trgm_ops)"
OLD = {
    "contacts_contact_first_name_trgm": "(UPPER(first_name::text) gin_trgm_ops)",
    "contacts_contact_last_name_trgm": "(UPPER(last_name::text) gin_trgm_ops)",
}


def one_index(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(
        f"CREATE INDEX IF NOT EXISTS {NAME} ON contacts_contact USING gin {EXPRESSION}"
    )
    for name in OLD:
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


def two_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, definition in OLD.items():
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {name} ON contacts_contact USING gin {definition}"
        )
    schema_editor.execute(f"DROP INDEX IF EXISTS {NAME}")


class Migration(migrations.Migration):
    dependencies = [("contacts", "0003_suppression_email_hash")]

    operations = [migrations.RunPython(one_index, two_indexes)]
