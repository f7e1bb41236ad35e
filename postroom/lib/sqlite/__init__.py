"""Django's SQLite backend, each transaction begun on the writers' turn (lib.groupcommit)."""
