"""Contact import at scale: generate a CSV, import it with `postroom import`, report the speed.

    python bench/import.py [--rows N] [--database-url URL] [--keep]

The file has six columns (email, first name, last name, city, plan, signup date), 1% invalid
rows (bad addresses, a whole row in one cell, a bad date) and 2% duplicates of earlier rows in
another case. The import runs as `postroom import FILE --project ID --json` in a child process,
so its peak RSS (ru_maxrss of the child) is the importer's alone, not the generator's.

SQLite (the default) runs in a throwaway POSTROOM_DATA_DIR under /tmp; PostgreSQL runs in the
database named by the URL (e.g. postgres://postgres@127.0.0.1:5432/postroom_bench_import), which
is dropped and created again. Afterwards the contacts in the database are counted against what
the generator knows to be valid and unique. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from contacts import FIRST_NAMES, LAST_NAMES, reset_postgres  # noqa: E402

CITIES = ["Berlin", "Lisboa", "Kraków", "São Paulo", "Zürich", "Québec", "Tōkyō", "Austin"]
PLANS = ["free", "pro", "team", "enterprise"]
TARGET_ROWS_PER_SECOND = 20_000
TARGET_RSS_MB = 300


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--database-url", default="", help="PostgreSQL URL; SQLite when empty.")
    p.add_argument("--keep", action="store_true", help="Keep the data dir and the file.")
    return p.parse_args()


def generate(path: Path, rows: int, seed: int = 7) -> int:
    """Write the file; returns how many distinct valid addresses it holds."""
    rng = random.Random(seed)
    valid = 0
    emitted: list[str] = []  # a sample of earlier addresses, for duplicates
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write("email,first_name,last_name,city,plan,signup_date\r\n")
        for i in range(rows):
            first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
            roll = rng.random()
            email = f"{first}.{last}.{i}@example{i % 50}.com".lower()
            date = f"20{rng.randint(10, 25)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
            if roll < 0.01:
                kind = i % 3
                if kind == 0:
                    email = f"{first}.{last}.{i}.example.com"  # no @
                elif kind == 1:
                    email = f"{email};{first};{last}"  # a whole row in one cell
                else:
                    date = "31/31/2020"  # not a date
            elif roll < 0.03 and emitted:
                email = rng.choice(emitted).upper()  # a duplicate, differently cased
            else:
                valid += 1
                if len(emitted) < 10_000:
                    emitted.append(email)
                elif rng.random() < 0.01:
                    emitted[rng.randrange(len(emitted))] = email
            city = rng.choice(CITIES)
            f.write(f"{email},{first},{last},{city},{rng.choice(PLANS)},{date}\r\n")
    return valid


def main() -> None:
    args = parse_args()
    data_dir = tempfile.mkdtemp(prefix="postroom-bench-import-")
    env = {
        **os.environ,
        "POSTROOM_DATA_DIR": data_dir,
        "DJANGO_SETTINGS_MODULE": "postroom.settings",
    }
    env.pop("DATABASE_URL", None)
    if args.database_url:
        reset_postgres(args.database_url)
        env["DATABASE_URL"] = args.database_url
    postroom = [sys.executable, "-m", "postroom"]
    subprocess.run([*postroom, "migrate", "-v0"], env=env, check=True)
    subprocess.run(
        [*postroom, "createadmin", "bench@example.com", "--password", "bench-pass-1"],
        env=env,
        check=True,
        capture_output=True,
    )
    created = subprocess.run(
        [*postroom, "project", "create", "Bench", "--owner", "bench@example.com", "--json"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    project = json.loads(created.stdout)["project"]

    csv_path = Path(data_dir) / "contacts.csv"
    started = time.perf_counter()
    valid = generate(csv_path, args.rows)
    size_mb = csv_path.stat().st_size / 2**20
    print(
        f"generated {args.rows:,} rows ({size_mb:.0f} MB, {valid:,} valid and distinct) "
        f"in {time.perf_counter() - started:.1f} s"
    )

    started = time.perf_counter()
    out = Path(data_dir) / "import.json"
    with open(out, "w") as stdout:
        child = subprocess.Popen(
            [*postroom, "import", str(csv_path), "--project", project, "--json"],
            env=env,
            stdout=stdout,
        )
        # wait4 gives this child's own resource use: its peak RSS alone.
        _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f"the import failed: {out.read_text()}")
    result = json.loads(out.read_text().strip().splitlines()[-1])
    peak_rss_mb = usage.ru_maxrss / 1024

    count = subprocess.run(
        [
            *postroom,
            "shell",
            "-c",
            "from postroom.contacts.models import Contact; print(Contact.objects.count())",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    stored = int(count.stdout.strip().splitlines()[-1])
    engine = "postgresql" if args.database_url else "sqlite"
    rows_per_second = int(args.rows / result["seconds"]) if result["seconds"] else 0
    print(
        f"{engine}: {args.rows:,} rows in {result['seconds']:.1f} s of import "
        f"({wall:.1f} s with start-up): {rows_per_second:,} rows/s "
        f"(target {TARGET_ROWS_PER_SECOND:,}), peak RSS {peak_rss_mb:.0f} MB "
        f"(target < {TARGET_RSS_MB})"
    )
    print(
        f"created {result['created']:,}, skipped {result['skipped']:,}, "
        f"rejected {result['rejected']:,}; contacts stored {stored:,}, expected {valid:,}"
    )
    if not args.keep:
        import shutil

        shutil.rmtree(data_dir, ignore_errors=True)
    print(
        json.dumps(
            {
                "engine": engine,
                "rows": args.rows,
                "rows_per_second": rows_per_second,
                "seconds": result["seconds"],
                "wall_seconds": round(wall, 1),
                "peak_rss_mb": round(peak_rss_mb),
                "created": result["created"],
                "skipped": result["skipped"],
                "rejected": result["rejected"],
                "stored": stored,
                "expected": valid,
                "lost": valid - stored,
            }
        )
    )


if __name__ == "__main__":
    main()
