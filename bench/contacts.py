"""Contacts at scale: seed N contacts set-based, then time the list, search, filters and segments.

    python bench/contacts.py [--contacts N] [--database-url URL]

SQLite (the default) runs in a throwaway POSTROOM_DATA_DIR under /tmp; PostgreSQL runs in the
database named by the URL (e.g. postgres://postgres@127.0.0.1:5432/postroom_bench), which is
dropped and created again for every run. Each operation runs once to warm up, then --runs
times; the median is the figure. The last line printed is one JSON object with every figure.

--try-index NAME adds an experimental index by hand (in the bench database only, never in the
package's migrations) before timing, so a proposed index can be measured against the baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

# Targets from the issue, in milliseconds, per engine.
TARGET_MS = {"postgresql": 300, "sqlite": 1000}


def words(text: str) -> list[str]:
    return text.split()


FIRST_NAMES = words("""
Maria James John Robert Michael David William Mary Patricia Jennifer Linda Elizabeth Barbara
Susan Jessica Sarah Karen Lisa Nancy Betty Sandra Margaret Ashley Kimberly Emily Donna Michelle
Carol Amanda Melissa Deborah Stephanie Rebecca Sharon Laura Cynthia Dorothy Amy Kathleen Angela
Shirley Emma Brenda Pamela Nicole Anna Samantha Katherine Christine Debra Rachel Carolyn Janet
Richard Joseph Thomas Christopher Charles Daniel Matthew Anthony Mark Donald Steven Andrew Paul
Joshua Kenneth Kevin Brian George Timothy Ronald Jason Edward Jeffrey Ryan Jacob Gary Nicholas
Eric Jonathan Stephen Larry Justin Scott Brandon Benjamin Samuel Gregory Alexander Patrick Frank
Raymond Jack Dennis Jerry Tyler Aaron Jose Adam Nathan Henry Zachary Douglas Peter Kyle Noah
Ethan Jeremy Walter Christian Keith Roger Terry Austin Sean Gerald Carl Harold Dylan Arthur
Lawrence Jordan Jesse Bryan Billy Bruce Gabriel Joe Logan Alan Juan Albert Willie Elijah Wayne
Randy Vincent Mason Roy Ralph Bobby Russell Bradley Philip Eugene Sofia Lucia Giulia Chiara
Francesca Elena Marco Luca Matteo Lorenzo Giuseppe Alessandro Hannah Lena Leonie Mia Lea Lukas
Leon Finn Jonas Felix Paul Louis Hugo Jules Chloe Camille Manon Ines Sara Javier Carlos Pablo
Diego Lucas Mateo Ana Carmen Isabel Julia Marta Hiroshi Yuki Haruto Sakura Wei Fang Ming Li
Priya Aarav Ananya Rohan Vikram Fatima Omar Ahmed Aisha Yusuf Olga Ivan Dmitri Anastasia Sven
Astrid Ingrid Lars Nils Freya Oskar Aoife Ciaran Siobhan Niamh Kofi Ama Chinedu Ngozi Amara
""")

LAST_NAMES = words("""
Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez
Gonzalez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White Harris
Sanchez Clark Ramirez Lewis Robinson Walker Young Allen King Wright Scott Torres Nguyen Hill
Flores Green Adams Nelson Baker Hall Rivera Campbell Mitchell Carter Roberts Gomez Phillips
Evans Turner Diaz Parker Cruz Edwards Collins Reyes Stewart Morris Morales Murphy Cook Rogers
Gutierrez Ortiz Morgan Cooper Peterson Bailey Reed Kelly Howard Ramos Kim Cox Ward Richardson
Watson Brooks Chavez Wood James Bennett Gray Mendoza Ruiz Hughes Price Alvarez Castillo Sanders
Patel Myers Long Ross Foster Jimenez Powell Jenkins Perry Russell Sullivan Bell Coleman Butler
Henderson Barnes Gonzales Fisher Vasquez Simmons Romero Jordan Patterson Alexander Hamilton
Graham Reynolds Griffin Wallace Moreno West Cole Hayes Bryant Herrera Gibson Ellis Tran Medina
Aguilar Stevens Murray Ford Castro Marshall Owens Harrison Fernandez McDonald Woods Washington
Kennedy Wells Vargas Henry Chen Freeman Webb Tucker Guzman Burns Crawford Olson Simpson Porter
Hunter Gordon Mendez Silva Shaw Snyder Mason Dixon Munoz Hunt Hicks Holmes Palmer Wagner Black
Robertson Boyd Rose Stone Salazar Fox Warren Mills Meyer Rice Schmidt Garza Daniels Ferguson
Nichols Stephens Soto Weaver Ryan Gardner Payne Grant Dunn Kelley Spencer Hawkins Arnold Pierce
Hansen Peters Santos Hart Bradley Knight Elliott Cunningham Duncan Armstrong Hudson Carroll Lane
Riley Andrews Alvarado Ray Delgado Berry Perkins Hoffman Johnston Matthews Pena Richards Willis
Rossi Russo Ferrari Esposito Bianchi Romano Colombo Ricci Marino Greco Muller Schneider Fischer
Weber Becker Schulz Koch Richter Klein Wolf Dubois Durand Leroy Moreau Laurent Lefebvre Bernard
Petit Sato Suzuki Takahashi Tanaka Watanabe Wang Zhang Liu Yang Huang Zhao Singh Kumar Sharma
Gupta Khan Ali Hussein Ivanov Petrov Smirnov Nielsen Jensen Larsen Andersen Johansson Karlsson
Nilsson Eriksson Murphy Byrne Walsh Okafor Mensah Adeyemi Okonkwo Kowalski Nowak Novak Horvath
""")

DOMAINS = [
    ("gmail.com", 40),
    ("yahoo.com", 10),
    ("outlook.com", 9),
    ("hotmail.com", 8),
    ("icloud.com", 6),
    ("gmx.de", 4),
    ("web.de", 3),
    ("proton.me", 3),
    ("orange.fr", 2),
    ("libero.it", 2),
    ("aol.com", 2),
    ("mail.ru", 2),
    ("qq.com", 2),
    ("example.org", 1),
    ("acme.io", 1),
    ("fastmail.com", 1),
    ("yandex.ru", 1),
    ("comcast.net", 1),
    ("btinternet.com", 1),
    ("free.fr", 1),
]

CITIES = words("""
London Paris Berlin Madrid Rome Lisbon Dublin Amsterdam Brussels Vienna Prague Warsaw Budapest
Stockholm Oslo Copenhagen Helsinki Athens Zurich Geneva Munich Hamburg Milan Barcelona Porto
Lyon Marseille Toronto Montreal Vancouver Chicago Boston Seattle Austin Denver Portland Atlanta
Miami Dallas Houston Phoenix Sydney Melbourne Auckland Tokyo Osaka Seoul Singapore Mumbai
Bangalore Nairobi Lagos Accra Cairo Istanbul Dubai
""")

# Tags and the share of contacts carrying each.
TAGS = [("newsletter", 300), ("customer", 120), ("webinar-2024", 50), ("beta", 15), ("vip", 5)]

# Odd multipliers for Knuth-style multiplicative hashing: fraction((n * K) / 2**32) is spread
# evenly over [0, 1) and nearly independent for different K, so every attribute of contact n
# is a deterministic, well mixed function of n, computed the same way on both engines.
K = {
    "first": 2654435761,
    "last": 2246822519,
    "domain": 3266489917,
    "status": 668265263,
    "age": 374761393,
    "city": 1103515245,
    "plan": 2166136261,
    "signup": 3323198485,
    "vip": 2870177451,
    "has_age": 1597334677,
    "jitter": 3812015801,
    "source": 2057349451,
    "newsletter": 1540483477,
    "customer": 3432918353,
    "webinar-2024": 461845907,
    "beta": 2899471307,
    "vip_tag": 1911520717,
}


def h(key: str, modulus: int, n: str = "n") -> str:
    """SQL for a well mixed integer in [0, modulus) derived from the integer column `n`."""
    return f"((({n} * {K[key]}) %% 4294967296) * {modulus} / 4294967296)"


# --- setup ---------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--contacts", type=int, default=1_000_000)
    p.add_argument("--database-url", default="", help="PostgreSQL URL; SQLite when omitted")
    p.add_argument(
        "--runs", type=int, default=5, help="timed runs per operation (after one warm-up)"
    )
    p.add_argument("--data-dir", default="", help="SQLite: keep the database in this directory")
    p.add_argument(
        "--reuse",
        action="store_true",
        help="skip reset and seeding: time the database seeded by an earlier run",
    )
    names = {engine: sorted(indexes) for engine, indexes in TRY_INDEXES.items()}
    p.add_argument(
        "--try-index",
        action="append",
        default=[],
        metavar="NAME",
        help=f"add an experimental index before timing (dropped at the end): {names}",
    )
    p.add_argument("--explain", action="store_true", help="print each operation's query plan")
    return p.parse_args()


def reset_postgres(url: str) -> None:
    import dj_database_url
    import psycopg

    cfg = dj_database_url.parse(url)
    name = cfg["NAME"]
    conninfo = psycopg.conninfo.make_conninfo(
        dbname="postgres",
        user=cfg["USER"] or None,
        password=cfg["PASSWORD"] or None,
        host=cfg["HOST"] or None,
        port=cfg["PORT"] or None,
    )
    with psycopg.connect(conninfo, autocommit=True) as conn:
        ident = psycopg.sql.Identifier(name)
        conn.execute(psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))
        conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(ident))


def setup_django(args: argparse.Namespace) -> str:
    """Point Django at the bench database, reset it unless --reuse; returns the data dir."""
    data_dir = args.data_dir or tempfile.mkdtemp(prefix="postroom-bench-")
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    os.environ["DJANGO_SETTINGS_MODULE"] = "postroom.settings"
    os.environ["POSTROOM_DATA_DIR"] = data_dir
    if args.database_url:
        os.environ["DATABASE_URL"] = args.database_url
        if not args.reuse:
            reset_postgres(args.database_url)
    else:
        os.environ.pop("DATABASE_URL", None)
        if not args.reuse:
            for suffix in ("", "-wal", "-shm"):
                Path(data_dir, "postroom.sqlite3" + suffix).unlink(missing_ok=True)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    return data_dir


# --- seeding -------------------------------------------------------------------------------


def weighted_slots(names: list[str], exponent: float) -> list[tuple[int, str]]:
    """(slot, name) rows where name k takes a share ~ 1/(k+1)**exponent: a few names are common."""
    slots: list[tuple[int, str]] = []
    for k, name in enumerate(dict.fromkeys(names)):
        weight = max(1, round(400 / (k + 1) ** exponent))
        slots += [(len(slots) + i, name) for i in range(weight)]
    return slots


def pick(key: str, choices: list[tuple[int, str]]) -> str:
    """SQL CASE choosing each SQL value for its share (in %) of contacts, by a hash of n."""
    whens, bound = [], 0
    for share, value in choices[:-1]:
        bound += share
        whens.append(f"WHEN {h(key, 100)} < {bound} THEN {value}")
    return f"CASE {' '.join(whens)} ELSE {choices[-1][1]} END"


def seed(n_contacts: int) -> int:
    """The project, its fields and tags, and its contacts inserted set-based. Returns its id."""
    from django.db import connection, transaction

    from postroom.accounts.actions import create_project
    from postroom.accounts.models import User
    from postroom.contacts.models import FieldDefinition, FieldType, Tag

    user = User.objects.create_user("bench@example.com", "bench-password")
    project, _ = create_project("Bench", user)
    fields = {
        "age": FieldType.NUMBER,
        "city": FieldType.TEXT,
        "plan": FieldType.TEXT,
        "signup_date": FieldType.DATE,
        "vip": FieldType.BOOLEAN,
    }
    for key, field_type in fields.items():
        label = key.replace("_", " ").title()
        FieldDefinition.objects.create(project=project, key=key, label=label, type=field_type)
    tags = {name: Tag.objects.create(project=project, name=name) for name, _ in TAGS}

    pg = connection.vendor == "postgresql"
    lookups = {
        "bench_first": weighted_slots(FIRST_NAMES, 0.6),
        "bench_last": weighted_slots(LAST_NAMES, 0.5),
        "bench_domain": list(enumerate(d for d, weight in DOMAINS for _ in range(weight))),
        "bench_city": list(enumerate(CITIES)),
    }
    with connection.cursor() as cur:
        for table, rows in lookups.items():
            cur.execute(f"DROP TABLE IF EXISTS {table}", [])
            cur.execute(f"CREATE TEMPORARY TABLE {table} (slot integer PRIMARY KEY, name text)", [])
            cur.executemany(f"INSERT INTO {table} (slot, name) VALUES (%s, %s)", rows)

    # Created dates rise with the id (contacts are added over time) across three years,
    # with up to an hour of jitter; the newest is a minute ago.
    span = 3 * 365 * 86400
    start = int(time.time()) - 60 - span
    step = span / max(n_contacts, 1)
    plan = pick("plan", [(70, "'free'"), (22, "'pro'"), (8, "'team'")])
    if pg:
        epoch = f"({start} + floor(n * {step!r}) + {h('jitter', 3600)})"
        ts = f"to_timestamp({epoch})"
        uuid = "gen_random_uuid()"
        days_before = f"{h('signup', 2000)} * interval '1 day'"
        signup = f"to_char(to_timestamp({epoch}) - {days_before}, 'YYYY-MM-DD')"
        # 30% of contacts have no age: a NULL value, stripped from the object.
        data = f"""jsonb_strip_nulls(jsonb_build_object(
            'age', CASE WHEN {h("has_age", 100)} < 70 THEN 18 + {h("age", 62)} END,
            'city', c.name, 'plan', {plan}, 'signup_date', {signup},
            'vip', {h("vip", 100)} < 2))"""
        number = "n::text"
    else:
        epoch = f"({start} + CAST(n * {step!r} AS INTEGER) + {h('jitter', 3600)})"
        ts = f"datetime({epoch}, 'unixepoch')"
        uuid = "lower(hex(randomblob(16)))"
        signup = f"date({epoch} - {h('signup', 2000)} * 86400, 'unixepoch')"
        vip = f"CASE WHEN {h('vip', 100)} < 2 THEN json('true') ELSE json('false') END"
        # 30% of contacts have no age: the key removed (removing a missing key is a no-op).
        data = f"""json_remove(json_object(
            'age', 18 + {h("age", 62)},
            'city', c.name, 'plan', {plan}, 'signup_date', {signup}, 'vip', {vip}),
            CASE WHEN {h("has_age", 100)} < 70 THEN '$.no_such_key' ELSE '$.age' END)"""
        number = "n"

    statuses = [(90, "'subscribed'"), (5, "'unsubscribed'"), (3, "'bounced'"), (2, "'complained'")]
    reasons = [
        (90, "''"),
        (5, "'Unsubscribe link'"),
        (3, "'Hard bounce: 550 5.1.1'"),
        (2, "'Complaint'"),
    ]
    select = f"""
        SELECT %s, {uuid},
               lower(f.name) || '.' || lower(l.name) || {number} || '@' || d.name,
               f.name, l.name, {data}, {pick("status", statuses)},
               {pick("status", [(90, "NULL"), (10, ts)])},
               {pick("status", reasons)},
               {pick("status", [(90, ts), (10, "NULL")])},
               {pick("source", [(60, "'form'"), (30, "'import'"), (10, "'api'")])},
               NULL, {ts}, {ts}
        FROM {{series}}
        JOIN bench_first f ON f.slot = {h("first", len(lookups["bench_first"]))}
        JOIN bench_last l ON l.slot = {h("last", len(lookups["bench_last"]))}
        JOIN bench_domain d ON d.slot = {h("domain", len(lookups["bench_domain"]))}
        JOIN bench_city c ON c.slot = {h("city", len(lookups["bench_city"]))}
    """
    insert = (
        "INSERT INTO contacts_contact (project_id, code, email, first_name, last_name, data, "
        "status, status_changed_at, status_reason, consent_at, consent_source, consent_ip, "
        "created_at, updated_at) "
    )

    chunk = 250_000
    with transaction.atomic(), connection.cursor() as cur:
        for lo in range(1, n_contacts + 1, chunk):
            hi = min(n_contacts, lo + chunk - 1)
            if pg:
                series = "generate_series(%s::bigint, %s::bigint) AS s(n)"
                cur.execute(insert + select.format(series=series), [project.id, lo, hi])
            else:
                numbers = (
                    f"WITH RECURSIVE s(n) AS "
                    f"(SELECT {lo} UNION ALL SELECT n + 1 FROM s WHERE n < {hi}) "
                )
                cur.execute(numbers + insert + select.format(series="s"), [project.id])
            print(f"  contacts {hi:,}/{n_contacts:,}", flush=True)
        # Tags, set-based: each tag on its share of contacts, chosen by a hash of the id.
        for name, per_mille in TAGS:
            key = "vip_tag" if name == "vip" else name
            cur.execute(
                "INSERT INTO contacts_contacttag (contact_id, tag_id, created_at) "
                "SELECT id, %s, created_at FROM contacts_contact WHERE project_id = %s "
                f"AND {h(key, 1000, 'id')} < %s",
                [tags[name].id, project.id, per_mille],
            )
        for table in lookups:
            cur.execute(f"DROP TABLE {table}", [])
    return project.id


def analyze() -> None:
    from django.db import connection

    with connection.cursor() as cur:
        # VACUUM as well on PostgreSQL: it sets the visibility map that index-only scans need,
        # which autovacuum would do on a database that has been running for a while.
        if connection.vendor == "postgresql":
            cur.execute("VACUUM ANALYZE", [])
        else:
            cur.execute("ANALYZE", [])
            # Move the seed out of the write-ahead log into the database file, as the periodic
            # checkpoints of a running install would.
            cur.execute("PRAGMA wal_checkpoint(TRUNCATE)", [])


# --- experimental indexes (bench database only) ---------------------------------------------

TRY_INDEXES: dict[str, dict[str, list[str]]] = {
    "postgresql": {
        # Substring search (ContactFilter.q, email/name contains): trigram indexes. Names use
        # icontains, which Django writes as UPPER(col::text) LIKE UPPER(%s).
        "trgm": [
            "CREATE EXTENSION IF NOT EXISTS pg_trgm",
            "CREATE INDEX bench_contact_email_trgm ON contacts_contact "
            "USING gin (email gin_trgm_ops)",
            "CREATE INDEX bench_contact_first_trgm ON contacts_contact "
            "USING gin (UPPER(first_name::text) gin_trgm_ops)",
            "CREATE INDEX bench_contact_last_trgm ON contacts_contact "
            "USING gin (UPPER(last_name::text) gin_trgm_ops)",
        ],
        # Custom number range on data->'age' (Django writes ("data" -> 'age') >= '30'::jsonb).
        "data_age": [
            "CREATE INDEX bench_contact_data_age ON contacts_contact ((data -> 'age'))",
        ],
        # Custom text contains on data->>'city' (UPPER((data ->> 'city')::text) LIKE UPPER(...)).
        "data_city_trgm": [
            "CREATE EXTENSION IF NOT EXISTS pg_trgm",
            "CREATE INDEX bench_contact_data_city_trgm ON contacts_contact "
            "USING gin (UPPER((data ->> 'city')::text) gin_trgm_ops)",
        ],
        # Tag membership probed from the contact side (measured: no gain for segment counts).
        "contacttag_contact_tag": [
            "CREATE INDEX bench_contacttag_contact_tag ON contacts_contacttag (contact_id, tag_id)",
        ],
    },
    # SQLite: none; its miss (segment b) is the shape of the JSON lookups, see bench/RESULTS.md.
    "sqlite": {},
}


def try_indexes(names: list[str]) -> list[str]:
    """Create the named experimental indexes; returns the index names to drop afterwards."""
    from django.db import connection

    created: list[str] = []
    with connection.cursor() as cur:
        for name in names:
            statements = TRY_INDEXES[connection.vendor].get(name)
            if statements is None:
                raise SystemExit(f"--try-index {name}: not defined for {connection.vendor}")
            for sql in statements:
                t0 = time.perf_counter()
                cur.execute(sql.replace("CREATE INDEX", "CREATE INDEX IF NOT EXISTS"), [])
                print(f"  {sql[:90]}… {ms(t0):.0f} ms")
                if sql.startswith("CREATE INDEX"):
                    created.append(sql.split()[2])
        cur.execute("ANALYZE", [])
    return created


def drop_indexes(names: list[str]) -> None:
    from django.db import connection

    with connection.cursor() as cur:
        for name in names:
            cur.execute(f"DROP INDEX IF EXISTS {name}", [])


# --- timing --------------------------------------------------------------------------------


def ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000


def measure(fn: Callable[[], Any], runs: int) -> tuple[float, float, Any]:
    """(median ms, best ms, result) over `runs` timed calls after one warm-up."""
    result = fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        result = fn()
        times.append(ms(t0))
    return statistics.median(times), min(times), result


def operations(project_id: int) -> tuple[dict[str, Callable[[], Any]], dict[str, Any]]:
    """The timed operations, by name, and the facts they were built from."""
    from django.db.models import Count, Max, Min, Q

    from postroom.accounts.models import Project
    from postroom.contacts.actions import ContactFilter, filtered_contacts
    from postroom.contacts.models import Contact
    from postroom.contacts.rules import clean_tree, segment_contacts
    from postroom.lib.keyset import encode_cursor, keyset_page

    project = Project.objects.get(id=project_id)
    contacts = Contact.objects.filter(project=project)
    bounds = contacts.aggregate(lo=Min("id"), hi=Max("id"))
    deep_id = bounds["lo"] + (bounds["hi"] - bounds["lo"]) // 10  # newest first: 90% down
    common_name = (
        contacts.values("first_name")
        .annotate(n=Count("id"))
        .order_by("-n")
        .values_list("first_name", flat=True)[0]
    )
    # One contact's address, a third of the way down: "smith734521@" matches it alone.
    rare_email = (
        contacts.filter(id__lte=bounds["hi"] - (bounds["hi"] - bounds["lo"]) // 3)
        .order_by("-id")
        .values_list("email", flat=True)[0]
    )
    local = rare_email.split("@")[0]
    rare_fragment = local.split(".")[-1] + "@"
    rare_digits = "".join(c for c in local if c.isdigit())
    facts = {
        "deep_cursor_id": deep_id,
        "common_term": common_name.lower(),
        "rare_term": rare_fragment,
        "rare_term_no_at": rare_digits,
    }

    def page(f: ContactFilter, after: str | None = None) -> str:
        qs = filtered_contacts(project, f).prefetch_related("tags")
        p = keyset_page(qs, after=after, size=50)
        # What a list row shows beside the contact: its tags.
        tags = sum(len(c.tags.all()) for c in p.items)
        return f"{len(p.items)} rows, {tags} tags"

    segments = {
        # (a) status + has tag
        "a": {
            "match": "all",
            "rules": [
                {"kind": "status", "op": "equals", "value": "subscribed"},
                {"kind": "tag", "op": "has", "value": "newsletter"},
            ],
        },
        # (b) custom number range OR custom text contains, in a nested group
        "b": {
            "match": "all",
            "rules": [
                {
                    "match": "any",
                    "rules": [
                        {
                            "match": "all",
                            "rules": [
                                {"kind": "field", "key": "age", "op": "gte", "value": 30},
                                {"kind": "field", "key": "age", "op": "lt", "value": 40},
                            ],
                        },
                        {"kind": "field", "key": "city", "op": "contains", "value": "port"},
                    ],
                }
            ],
        },
        # (c) created in the last 90 days AND no tag AND custom date before a date
        "c": {
            "match": "all",
            "rules": [
                {"kind": "created_at", "op": "within_days", "value": 90},
                {"kind": "tag", "op": "has_not", "value": "customer"},
                {"kind": "field", "key": "signup_date", "op": "before", "value": "2025-01-01"},
            ],
        },
    }

    def count(tree: dict) -> Callable[[], int]:
        return lambda: segment_contacts(project, clean_tree(tree, project)).count()

    def editor(tree: dict) -> Callable[[], dict]:
        return lambda: segment_contacts(project, clean_tree(tree, project)).aggregate(
            total=Count("id"), subscribed=Count("id", filter=Q(status="subscribed"))
        )

    def preview(tree: dict) -> Callable[[], int]:
        # The editor shows the ten newest matches beside its figure (views.segment_count).
        return lambda: len(
            segment_contacts(project, clean_tree(tree, project)).order_by("-id")[:10]
        )

    ops: dict[str, Callable[[], Any]] = {
        "list_first_page": lambda: page(ContactFilter()),
        "list_deep_page": lambda: page(ContactFilter(), after=encode_cursor(deep_id)),
        "search_common": lambda: page(ContactFilter(q=common_name.lower())),
        "search_rare_email": lambda: page(ContactFilter(q=rare_fragment)),
        "search_rare_no_at": lambda: page(ContactFilter(q=rare_digits)),
        # A typo: nothing matches, so every contact is read (the worst case of a search).
        "search_no_match": lambda: page(ContactFilter(q="qxzjv")),
        "filter_status_bounced": lambda: page(ContactFilter(status="bounced")),
        "filter_tag_vip": lambda: page(ContactFilter(tag="vip")),
        "filter_tag_newsletter": lambda: page(ContactFilter(tag="newsletter")),
        # The list's "N contacts" figure, loaded after the page (contacts.views.contact_count).
        "list_count_all": lambda: filtered_contacts(project, ContactFilter()).count(),
        "list_count_search_common": lambda: filtered_contacts(
            project, ContactFilter(q=common_name.lower())
        ).count(),
        "list_count_tag_newsletter": lambda: filtered_contacts(
            project, ContactFilter(tag="newsletter")
        ).count(),
    }
    for key, tree in segments.items():
        ops[f"segment_{key}_count"] = count(tree)
        ops[f"segment_{key}_editor"] = editor(tree)
        ops[f"segment_{key}_preview"] = preview(tree)
    return ops, facts


def explain(name: str, fn: Callable[[], Any], only: Callable[[str], bool] = bool) -> None:
    """The plan of each query of `fn` that `only` keeps (EXPLAIN ANALYZE on PostgreSQL)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        fn()
    pg = connection.vendor == "postgresql"
    for q in captured.captured_queries:
        sql = q["sql"]
        if not only(sql):
            continue
        with connection.cursor() as cur:
            cur.execute(("EXPLAIN (ANALYZE, BUFFERS) " if pg else "EXPLAIN QUERY PLAN ") + sql)
            plan = "\n    ".join(" ".join(str(c) for c in row) for row in cur.fetchall())
        print(f"  [{name}] {q['time']} s: {sql[:400]}\n    {plan}", flush=True)


def time_operations(
    ops: dict[str, Callable[[], Any]],
    args: argparse.Namespace,
    target: float,
    only: Callable[[str], bool] = bool,
    width: int = 25,
) -> dict[str, Any]:
    """Each operation timed (median and best of args.runs after a warm-up) and printed against
    `target`; a result starting with ERROR is a miss whatever its time."""
    medians: dict[str, float] = {}
    bests: dict[str, float] = {}
    results: dict[str, Any] = {}
    for name, fn in ops.items():
        if args.explain:
            explain(name, fn, only)
        median, best, result = measure(fn, args.runs)
        medians[name], bests[name], results[name] = round(median, 1), round(best, 1), result
        failed = str(result).startswith("ERROR")
        flag = "ok" if median < target and not failed else "MISS"
        print(
            f"{name:{width}} median {median:8.1f} ms  best {best:8.1f} ms  "
            f"result {result!s:30} {flag} (< {target} ms)",
            flush=True,
        )
    return {
        "median_ms": medians,
        "best_ms": bests,
        "results": results,
        "target_ms": target,
        "missed": [
            n for n, v in medians.items() if v >= target or str(results[n]).startswith("ERROR")
        ],
    }


# --- main ----------------------------------------------------------------------------------


def main() -> None:
    args = parse_args()
    data_dir = setup_django(args)
    from django.db import connection

    try:
        figures = run(args)
    finally:
        connection.close()
        if not args.data_dir:  # a throwaway directory (SQLite's file, the secret key)
            shutil.rmtree(data_dir, ignore_errors=True)
    print(json.dumps(figures, default=str))


def run(args: argparse.Namespace) -> dict[str, Any]:
    from django.core.management import call_command
    from django.db import connection

    engine = connection.vendor
    print(f"engine: {engine} ({connection.settings_dict['NAME']}), contacts: {args.contacts:,}")
    figures: dict[str, Any] = {"engine": engine, "contacts": args.contacts}

    if args.reuse:
        from postroom.accounts.models import Project

        project_id = Project.objects.get(name="Bench").id
    else:
        t0 = time.perf_counter()
        call_command("migrate", verbosity=0, interactive=False)
        figures["migrate_ms"] = round(ms(t0))
        t0 = time.perf_counter()
        project_id = seed(args.contacts)
        figures["seed_ms"] = round(ms(t0))
        print(f"seeded in {figures['seed_ms'] / 1000:.1f} s")
        t0 = time.perf_counter()
        analyze()
        figures["analyze_ms"] = round(ms(t0))
        what = "VACUUM ANALYZE" if engine == "postgresql" else "ANALYZE + WAL checkpoint"
        print(f"{what} in {figures['analyze_ms'] / 1000:.1f} s")

    created = try_indexes(args.try_index) if args.try_index else []
    figures["try_index"] = args.try_index
    try:
        ops, facts = operations(project_id)
        figures["facts"] = facts
        print("facts:", json.dumps(facts))
        figures.update(time_operations(ops, args, TARGET_MS[engine]))
    finally:
        if created:
            drop_indexes(created)
    return figures


if __name__ == "__main__":
    main()
