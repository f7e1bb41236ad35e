"""Trigram indexes for the contacts search on PostgreSQL (SQLite has no equivalent; skipped).

The contacts list searches with `email LIKE '%q%'` and `UPPER(first_name) LIKE UPPER('%q%')`;
with no index those read every row. bench/contacts.py at 1,000,000 contacts measured a search
with no match at 493 ms without these indexes and 0.8 ms with them.
"""

from django.db import migrations

INDEXES = {
    "contacts_contact_email_trgm": "(email gin_trgm_ops)",
    "contacts_contact_first_name_trgm": "(UPPER(first_name::text) gin_trgm_ops)",
    "contacts_contact_last_name_trgm": "(UPPER(last_name::text) gin_trgm_ops)",
}


def create_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    # pg_trgm is a trusted extension (PostgreSQL 13+): a database owner may create it.
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for name, definition in INDEXES.items():
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {name} ON contacts_contact USING gin {definition}"
        )


def drop_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name in INDEXES:
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [("contacts", "0001_initial")]

    operations = [migrations.RunPython(create_indexes, drop_indexes)]
