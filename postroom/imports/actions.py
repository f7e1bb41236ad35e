"""Contact imports: store and sniff an upload, configure it, and run it in the worker.

The worker reads the file in chunks of CHUNK records. Each chunk's contacts, tags, report rows
and the checkpoint (Import.records_done) commit in one transaction, so a worker killed at any
moment leaves the import exactly at a checkpoint: the next claim resumes there, nothing lost,
nothing done twice. Between chunks the open file and the set of addresses seen so far stay in
this process (ImportSession); a worker that takes an import over from a dead one rebuilds
both by reading the file up to the checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
import zipfile
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta as td
from pathlib import Path
from typing import IO, Any

import psycopg
from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, connections, transaction
from django.db.models import F, Q
from django.utils import timezone

from postroom.accounts.models import Project, User
from postroom.contacts.actions import (
    ContactError,
    clean_tag_names,
    create_field,
    field_definitions,
    get_or_create_tags,
    restore_addresses,
)
from postroom.contacts.models import (
    ConsentSource,
    Contact,
    ContactTag,
    FieldDefinition,
    Status,
    Suppression,
    Tag,
)
from postroom.imports.columns import MappingError, auto_mapping, clean_mapping, is_known_header
from postroom.imports.models import Import, ImportIssue
from postroom.imports.rows import (
    ContactRow,
    Record,
    RecordReader,
    RowParser,
    RowRejected,
    estimate_rows,
    printable,
    raw_text,
    read_preview,
)
from postroom.lib.csvsafe import line_writer, safe_cell
from postroom.lib.csvsniff import DELIMITERS, ENCODINGS, SAMPLE_BYTES, sniff
from postroom.lib.emails import hash_email
from postroom.lib.ids import uuid7
from postroom.lib.leases import LeaseLost, update_while_leased
from postroom.webhooks.actions import emit
from postroom.webhooks.payloads import import_data

log = logging.getLogger(__name__)

# Records per transaction: about a fifth of a second of work, so a killed worker loses little
# and the progress bar moves smoothly.
CHUNK = 5000
# Rows per INSERT statement on SQLite (it allows 32,766 parameters; a contact takes 13). Few
# big statements: each return from SQLite waits for the GIL the reading thread holds.
INSERT_BATCH = 2000
DATA_EXTENSIONS = (".csv", ".tsv", ".txt")


class ImportProblem(ValueError):
    """Bad import input; `field` names the setting or file at fault."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


# --- upload and settings ---------------------------------------------------------------------


def create_import(
    project: Project,
    upload: IO[bytes],
    file_name: str,
    user: User | None = None,
    source: str = Import.Source.DASHBOARD,
) -> Import:
    """Store an uploaded file (unzipped when it is a .zip), guess its encoding, delimiter and
    header, and map its columns: an Import in state draft, to be configured and started."""
    file_name = os.path.basename(file_name or "contacts.csv")[:255] or "contacts.csv"
    imp = Import(project=project, file_name=file_name, created_by=user, source=source)
    settings.IMPORTS_DIR.mkdir(parents=True, exist_ok=True)
    try:
        imp.file_size = store_upload(upload, file_name, imp.path)
        with open(imp.path, "rb") as f:
            sample = f.read(SAMPLE_BYTES)
        if not sample.strip():
            raise ImportProblem("file", "the file is empty.")
        sniffed = sniff(sample, is_known_header)
        imp.detected = {
            "encoding": sniffed.encoding,
            "delimiter": sniffed.delimiter,
            "has_header": sniffed.has_header,
        }
        imp.encoding, imp.delimiter = sniffed.encoding, sniffed.delimiter
        imp.has_header = sniffed.has_header
        remap(imp)
        imp.save()
    except BaseException:
        imp.path.unlink(missing_ok=True)
        raise
    return imp


def store_upload(upload: IO[bytes], file_name: str, path: Path) -> int:
    """Copy the upload to `path`, the data file inside it if it is a zip; its size in bytes."""
    limit = settings.IMPORT_MAX_BYTES
    if file_name.lower().endswith(".zip"):
        try:
            archive = zipfile.ZipFile(upload)
        except zipfile.BadZipFile:
            raise ImportProblem("file", "the .zip file cannot be opened.") from None
        with archive:
            members = [
                m
                for m in archive.infolist()
                if not m.is_dir()
                and m.filename.lower().endswith(DATA_EXTENSIONS)
                and not m.filename.startswith("__MACOSX/")
            ]
            if len(members) != 1:
                raise ImportProblem(
                    "file",
                    f"the .zip must hold one .csv, .tsv or .txt file; it holds {len(members)}.",
                )
            with archive.open(members[0]) as source:
                return _copy_limited(source, path, limit)
    if not file_name.lower().endswith(DATA_EXTENSIONS):
        raise ImportProblem("file", "upload a .csv, .tsv or .txt file, or a .zip holding one.")
    return _copy_limited(upload, path, limit)


def _copy_limited(source: IO[bytes], path: Path, limit: int) -> int:
    """Copy in blocks, stopping at `limit` bytes (a zip can unpack to far more than it weighs)."""
    size = 0
    with open(path, "wb") as out:
        while block := source.read(1024 * 1024):
            size += len(block)
            if size > limit:
                raise ImportProblem("file", f"the file is larger than {limit // 2**20} MB.")
            out.write(block)
    return size


def remap(imp: Import) -> None:
    """Read the header (or first rows) again with the current settings and map the columns."""
    headers, records = read_preview(imp.path, imp.encoding, imp.delimiter, imp.has_header, 20)
    imp.headers = headers
    sample = [r.cells for r in records if r.cells]
    imp.mapping = auto_mapping(headers, field_definitions(imp.project), sample)


def preview(imp: Import, limit: int = 10) -> list[Record]:
    return read_preview(imp.path, imp.encoding, imp.delimiter, imp.has_header, limit)[1]


def preview_rows(
    imp: Import, records: list[Record], fields: dict[str, FieldDefinition]
) -> list[dict[str, Any]]:
    """The first records as parsed, each with what the import would make of it; cells as
    text a page or JSON can carry (undecodable bytes shown as U+FFFD)."""
    try:
        parser = RowParser(imp.mapping, fields, imp.delimiter, len(imp.mapping))
    except StopIteration:  # no email column yet
        parser = None
    rows = []
    for record in records:
        verdict = record.error
        if not verdict and parser is not None:
            try:
                parser.parse(record)
            except RowRejected as e:
                verdict = str(e)
        elif parser is None:
            verdict = "Map a column to email."
        cells = [printable(cell) for cell in record.cells or []]
        rows.append({"line": record.line, "cells": cells, "problem": printable(verdict)})
    return rows


def file_width(imp: Import) -> int:
    if imp.has_header and imp.headers:
        return len(imp.headers)
    return max((len(r.cells or []) for r in preview(imp, 20)), default=1)


@dataclass
class ImportSettings:
    """What a person may choose before starting; None leaves a setting as it is."""

    encoding: str | None = None
    delimiter: str | None = None
    has_header: bool | None = None
    mapping: list | None = None
    mode: str | None = None
    overwrite: list[str] | None = None
    tags: list[str] | None = None
    dry_run: bool | None = None


def configure_import(imp: Import, chosen: ImportSettings) -> Import:
    """Apply the chosen settings to a draft, checking each (ImportProblem names the setting).
    A new encoding, delimiter or header choice re-reads the columns and maps them again,
    unless a mapping is given too."""
    if imp.state != Import.State.DRAFT:
        raise ImportProblem("state", f"the import is {imp.get_state_display().lower()}.")
    reread = False
    if chosen.encoding is not None and chosen.encoding != imp.encoding:
        if chosen.encoding not in ENCODINGS:
            raise ImportProblem("encoding", f"one of {', '.join(ENCODINGS)}.")
        imp.encoding, reread = chosen.encoding, True
    if chosen.delimiter is not None and chosen.delimiter != imp.delimiter:
        delimiter = "\t" if chosen.delimiter in ("tab", "\\t") else chosen.delimiter
        if delimiter not in DELIMITERS:
            raise ImportProblem("delimiter", "one of , ; | or tab.")
        imp.delimiter, reread = delimiter, True
    if chosen.has_header is not None and chosen.has_header != imp.has_header:
        imp.has_header, reread = chosen.has_header, True
    if reread:
        remap(imp)
    if chosen.mapping is not None:
        try:
            imp.mapping = clean_mapping(
                chosen.mapping, file_width(imp), field_definitions(imp.project)
            )
        except MappingError as e:
            raise ImportProblem(e.field, e.message) from None
    if chosen.mode is not None:
        if chosen.mode not in Import.Mode.values:
            raise ImportProblem("mode", f"one of {', '.join(Import.Mode.values)}.")
        imp.mode = chosen.mode
    if chosen.overwrite is not None:
        unknown = set(chosen.overwrite) - set(Import.OVERWRITABLE)
        if unknown:
            raise ImportProblem("overwrite", f"choose from {', '.join(Import.OVERWRITABLE)}.")
        imp.overwrite = sorted(set(chosen.overwrite))
    if chosen.tags is not None:
        try:
            imp.tags = clean_tag_names(chosen.tags)
        except ContactError as e:
            raise ImportProblem("tags", e.message) from None
    if chosen.dry_run is not None:
        imp.dry_run = chosen.dry_run
    imp.save()
    return imp


def start_import(imp: Import) -> Import:
    """Check the mapping once more, create the custom fields it names (not in a dry run), and
    queue the import for the worker."""
    if imp.state != Import.State.DRAFT:
        raise ImportProblem("state", f"the import is {imp.get_state_display().lower()}.")
    fields = field_definitions(imp.project)
    try:
        imp.mapping = clean_mapping(imp.mapping, file_width(imp), fields)
    except MappingError as e:
        raise ImportProblem(e.field, e.message) from None
    with transaction.atomic():
        if not imp.dry_run and imp.mode in (Import.Mode.CREATE, Import.Mode.UPSERT):
            create_mapped_fields(imp.project, imp.mapping)
        imp.state = Import.State.PENDING
        imp.save()
    return imp


def create_mapped_fields(project: Project, mapping: list[dict[str, Any]]) -> None:
    """The new custom fields the mapping names (clean_mapping checked their keys and types)."""
    for entry in mapping:
        if entry["target"] == "field" and "type" in entry:
            label = entry["field"].replace("_", " ").capitalize()
            create_field(project, entry["field"], label, entry.pop("type"))


def cancel_import(imp: Import) -> bool:
    """Stop a draft, waiting or running import; what is committed stays. False if finished."""
    cancelled = Import.objects.filter(
        pk=imp.pk, state__in=[Import.State.DRAFT, Import.State.PENDING, Import.State.RUNNING]
    ).update(state=Import.State.CANCELLED, finished_at=timezone.now(), lease_until=None)
    imp.refresh_from_db()
    return cancelled == 1


def repeat_for_real(imp: Import, user: User | None) -> Import:
    """After a dry run: the same file and settings, queued to import for real."""
    if not imp.dry_run or imp.state != Import.State.DONE:
        raise ImportProblem("state", "only a finished dry run can be run for real.")
    if not imp.path.exists():
        raise ImportProblem("file", "the file of this dry run was removed: upload it again.")
    again = Import(
        project=imp.project,
        source=imp.source,
        created_by=user,
        **{
            name: getattr(imp, name)
            for name in (
                "file_name",
                "file_size",
                "detected",
                "encoding",
                "delimiter",
                "has_header",
                "headers",
                "mapping",
                "mode",
                "overwrite",
                "tags",
            )
        },
    )
    shutil.copyfile(imp.path, again.path)
    again.save()
    return start_import(again)


# --- the worker --------------------------------------------------------------------------------


@dataclass
class ImportSession:
    """What a worker keeps between the chunks of an import it holds."""

    reader: RecordReader
    parser: RowParser
    # Hashes of the addresses of accepted rows so far: duplicates inside the file. Hashes,
    # not strings, keep a million addresses in tens of MB.
    seen: set[int] = field(default_factory=set)
    tag_ids: dict[str, int] = field(default_factory=dict)
    lease_until: Any = None
    # Records handed out in chunks so far: equals Import.records_done between steps.
    checkpoint: int = 0
    # The next chunks, read in a thread while these are written: parsing is Python and
    # holds the GIL, the database driver waits without it, so the two overlap (measured:
    # see bench/RESULTS.md, "Contact import").
    ahead: deque[Future] = field(default_factory=deque)
    # Builds new contacts' column values while reading, when the mode creates contacts.
    values: ContactValues | None = None
    pool: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(max_workers=1))
    # A thread with a database connection of its own that writes every second chunk of a
    # step (PostgreSQL, see PARALLEL_WRITES); None writes one chunk a step.
    writer: ThreadPoolExecutor | None = None

    def chunks_per_step(self) -> int:
        return 2 if self.writer is not None else 1

    def next_chunk(self, imp: Import) -> Chunk:
        chunk = self.ahead.popleft().result() if self.ahead else read_chunk(imp, self)
        self.checkpoint += chunk.consumed
        if READ_AHEAD.get(connection.vendor, False) and not chunk.finished:
            # Reads run in order on the one reading thread; one past the end is empty.
            while len(self.ahead) < self.chunks_per_step():
                self.ahead.append(self.pool.submit(read_chunk, imp, self))
        return chunk

    def close(self) -> None:
        for read in self.ahead:
            with contextlib.suppress(Exception):
                read.result()  # let the reading thread finish before closing its file
        self.pool.shutdown()
        if self.writer is not None:
            # Its connection belongs to its thread: close it there.
            with contextlib.suppress(Exception):
                self.writer.submit(connections.close_all).result()
            self.writer.shutdown()
        self.reader.close()


# Whether to read the next chunk in a thread while writing one. psycopg waits for the server
# without the GIL, so reading overlaps writing (100,000 rows: 7.3 -> 5.1 s). The sqlite3
# module's executemany releases and retakes the GIL for every row, and a reading thread then
# slows each retake (100,000 rows: 4.6 -> 6.3 s).
READ_AHEAD = {"postgresql": True, "sqlite": False}

# Whether a step writes two chunks at once, each in its own transaction on its own
# connection. A PostgreSQL backend inserts on one core, and an import is bound by it (the
# trigram indexes): two connections inserting 5,000-row chunks took 36,000-38,000 rows/s
# where one took 25,000-27,000. SQLite has one write lock, so one writer.
PARALLEL_WRITES = {"postgresql": True, "sqlite": False}


def writes_in_parallel() -> bool:
    """Two writers need their own transactions: not inside a caller's (tests' TestCase)."""
    return PARALLEL_WRITES.get(connection.vendor, False) and not connection.in_atomic_block


sessions: dict[int, ImportSession] = {}


def drop_session(import_id: int) -> None:
    session = sessions.pop(import_id, None)
    if session is not None:
        session.close()


def claim_import(only: int | None = None) -> Import | None:
    """An import this worker holds (continue), else a pending one or one whose worker died;
    `only` limits the choice to one import (the CLI runs its own)."""
    now = timezone.now()
    for import_id, session in list(sessions.items()):
        if only is not None and import_id != only:
            continue
        held = Import.objects.filter(
            pk=import_id, state=Import.State.RUNNING, lease_until=session.lease_until
        )
        if held.update(lease_until=now + Import.LEASE) == 1:
            session.lease_until = now + Import.LEASE
            return Import.objects.select_related("project").get(pk=import_id)
        drop_session(import_id)  # cancelled, or taken over after a stall
    candidates = Import.objects.filter(
        Q(state=Import.State.PENDING)
        | Q(state=Import.State.RUNNING, lease_until__lt=now)
        | Q(state=Import.State.RUNNING, lease_until=None)
    ).order_by("id")
    if only is not None:
        candidates = candidates.filter(pk=only)
    for imp in candidates[:5]:
        claimed = Import.objects.filter(
            pk=imp.pk, state=imp.state, lease_until=imp.lease_until
        ).update(state=Import.State.RUNNING, lease_until=now + Import.LEASE)
        if claimed == 1:  # else another worker got there first
            imp = Import.objects.select_related("project").get(pk=imp.pk)
            drop_session(imp.pk)
            return imp
    return None


def release_imports() -> None:
    """On a clean worker stop: hand held imports over at once instead of at lease expiry."""
    for import_id, session in list(sessions.items()):
        Import.objects.filter(
            pk=import_id, state=Import.State.RUNNING, lease_until=session.lease_until
        ).update(lease_until=None)
        drop_session(import_id)


def handle_one_import(only: int | None = None) -> bool:
    """Worker step: one chunk of one import. True when there was work."""
    imp = claim_import(only)
    if imp is None:
        return False
    try:
        run_import_chunk(imp)
    except LeaseLost:
        drop_session(imp.pk)
        log.warning("import %s: lease lost (cancelled or taken over), chunk rolled back", imp.code)
    except (OperationalError, InterfaceError):
        # Nothing of this chunk was committed; the lease runs out and the import is resumed
        # from its checkpoint by whichever worker claims it.
        drop_session(imp.pk)
        log.warning("import %s: database error, will resume", imp.code, exc_info=True)
        return False
    except Exception as e:
        drop_session(imp.pk)
        log.exception("import %s failed", imp.code)
        with contextlib.suppress(LeaseLost):
            _while_leased(
                imp,
                state=Import.State.FAILED,
                error=str(e)[:500],
                finished_at=timezone.now(),
                lease_until=None,
            )
            imp.refresh_from_db()
            emit(imp.project_id, "import.finished", import_data(imp))
    return True


def _while_leased(imp: Import, *, at_checkpoint: int | None = None, **changes) -> None:
    """Write `changes` only while this worker holds the lease (and, with `at_checkpoint`,
    while records_done is still that); else raise LeaseLost."""
    held = Import.objects.filter(pk=imp.pk, state=Import.State.RUNNING, lease_until=imp.lease_until)
    if at_checkpoint is not None:
        held = held.filter(records_done=at_checkpoint)
    update_while_leased(held, **changes)


def open_session(imp: Import) -> ImportSession:
    """Open the file and read it up to the checkpoint, remembering the addresses accepted
    before it, exactly as the chunks that committed them did."""
    if not imp.path.exists():
        raise FileNotFoundError("the uploaded file is gone (removed from the imports folder).")
    width = len(imp.mapping)
    reader = RecordReader(imp.path, imp.encoding, imp.delimiter, imp.has_header, width)
    emails_only = imp.mode in (Import.Mode.UNSUBSCRIBE, Import.Mode.SUPPRESS)
    parser = RowParser(
        imp.mapping, field_definitions(imp.project), imp.delimiter, width, emails_only
    )
    session = ImportSession(
        reader=reader, parser=parser, lease_until=imp.lease_until, checkpoint=imp.records_done
    )
    if writes_in_parallel():
        session.writer = ThreadPoolExecutor(max_workers=1)
    if imp.mode in (Import.Mode.CREATE, Import.Mode.UPSERT) and not imp.dry_run:
        session.values = ContactValues(imp)
    while reader.records < imp.records_done:
        record = reader.next()
        if record is None:
            break
        with contextlib.suppress(RowRejected):
            # As read_chunk does: a record that could not be read is rejected, not parsed.
            if not record.error and record.cells and any(record.cells):
                session.seen.add(hash(parser.parse(record).email))
    return session


def run_import_chunk(imp: Import) -> None:
    """One step: the next chunk (two with parallel writers), each committed with its
    checkpoint, in the file's order."""
    session = sessions.get(imp.pk)
    if session is None or session.checkpoint != imp.records_done:
        drop_session(imp.pk)
        session = sessions[imp.pk] = open_session(imp)
    session.lease_until = imp.lease_until
    if imp.started_at is None or imp.total_rows is None:
        imp.started_at = imp.started_at or timezone.now()
        imp.total_rows = estimate_rows(imp.path, imp.has_header)
        _while_leased(imp, started_at=imp.started_at, total_rows=imp.total_rows)
    if connection.vendor == "sqlite":
        # Copy the write-ahead log into the database every 80 MB rather than every 4 MB: an
        # import rewrites the same index pages chunk after chunk (300,000 rows: 15.4 -> 13.8 s).
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA wal_autocheckpoint = 20000")
    chunks = [session.next_chunk(imp)]
    while len(chunks) < session.chunks_per_step() and not chunks[-1].finished:
        chunks.append(session.next_chunk(imp))
    if len(chunks) == 1:
        write_chunk(imp, session, chunks[0], imp.records_done)
    else:
        write_two_chunks(imp, session, chunks, imp.records_done)
    if chunks[-1].finished:
        drop_session(imp.pk)


class EarlierChunkFailed(Exception):
    """The chunk before this one did not commit: this one must not either."""


def write_two_chunks(imp: Import, session: ImportSession, chunks: list[Chunk], start: int) -> None:
    """The first chunk on this thread's connection, the second on the writer's, at once; the
    second commits only after the first (its checkpoint follows the first's), and not at all
    if the first fails. Each is its own transaction, so a crash leaves a checkpoint."""
    first, second = chunks
    if not imp.dry_run and imp.mode in (Import.Mode.CREATE, Import.Mode.UPSERT):
        # Made here, committed, so that the two transactions never wait on each other's new
        # tag: the second waits for the first's commit, a lock wait the other way would hang.
        tag_ids_for(session, imp, [t for c in chunks for r in c.rows for t in r.tags])
    first_committed: Future = Future()
    second_written = session.writer.submit(
        write_chunk, imp, session, second, start + first.consumed, first_committed
    )
    try:
        write_chunk(imp, session, first, start)
    except BaseException:
        first_committed.set_exception(EarlierChunkFailed())
        with contextlib.suppress(Exception):
            second_written.result()
        raise
    first_committed.set_result(None)
    second_written.result()


def write_chunk(
    imp: Import, session: ImportSession, chunk: Chunk, start: int, after: Future | None = None
) -> None:
    """Write the chunk and move the checkpoint from `start` past it, in one transaction; with
    `after`, the checkpoint waits for that (the chunk before) to commit."""
    rows, issues, finished = chunk.rows, chunk.issues, chunk.finished
    with transaction.atomic():
        if connection.vendor == "postgresql":
            # Safe here: a commit lost to a crash loses its checkpoint with it, and the
            # chunk is read again; waiting for the WAL flush bought nothing.
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL synchronous_commit TO OFF")
        counts = write_rows(imp, session, rows, issues)
        ImportIssue.objects.bulk_create(issues, batch_size=1000)
        counts["rejected"] = sum(1 for i in issues if i.kind == ImportIssue.Kind.REJECTED)
        counts["skipped"] = counts.get("skipped", 0) + len(issues) - counts["rejected"]
        if after is not None:
            after.result()  # raises EarlierChunkFailed: this transaction rolls back
        # The checkpoint commits with the chunk's rows, or (lease lost) neither does.
        _while_leased(
            imp,
            at_checkpoint=start,
            records_done=start + chunk.consumed,
            total_rows=start + chunk.consumed if finished else imp.total_rows,
            state=Import.State.DONE if finished else Import.State.RUNNING,
            finished_at=timezone.now() if finished else None,
            lease_until=None if finished else imp.lease_until,
            **{name: F(name) + n for name, n in counts.items() if n},
        )
        if finished:
            imp.refresh_from_db()
            emit(imp.project_id, "import.finished", import_data(imp))


@dataclass
class Chunk:
    rows: list[ContactRow]  # to write
    issues: list[ImportIssue]  # turned away so far (writing may add "skipped" ones)
    consumed: int  # records read
    finished: bool  # the end of the file was reached


def read_chunk(imp: Import, session: ImportSession) -> Chunk:
    """The next CHUNK records of the file. No database access: it runs in a thread."""
    rows: list[ContactRow] = []
    issues: list[ImportIssue] = []
    reader, parser, seen = session.reader, session.parser, session.seen
    if session.values is not None:
        session.values.start_chunk()
    start = reader.records
    finished = False
    while reader.records - start < CHUNK:
        record = reader.next()
        if record is None:
            finished = True
            break
        if record.error:
            issues.append(issue(imp, record, ImportIssue.Kind.REJECTED, record.error))
            continue
        if not record.cells or not any(record.cells):
            continue  # a blank line
        try:
            row = parser.parse(record)
        except RowRejected as e:
            issues.append(issue(imp, record, ImportIssue.Kind.REJECTED, str(e)))
            continue
        key = hash(row.email)
        if key in seen:
            reason = f"duplicate: {row.email} is on an earlier line of the file."
            issues.append(issue(imp, record, ImportIssue.Kind.SKIPPED, reason))
            continue
        seen.add(key)
        row.record = record
        if session.values is not None:
            row.values = session.values(row)
        rows.append(row)
    return Chunk(rows, issues, reader.records - start, finished)


def issue(imp: Import, record: Record, kind: str, reason: str) -> ImportIssue:
    line = record.line
    if record.last_line - record.line > 1 and kind == ImportIssue.Kind.REJECTED:
        reason = f"{reason} (the row runs over lines {record.line}-{record.last_line})"
    return ImportIssue(
        run=imp, line=line, kind=kind, reason=reason[:300], raw=raw_text(record, imp.delimiter)
    )


# --- writing a chunk ----------------------------------------------------------------------------


def write_rows(
    imp: Import, session: ImportSession, rows: list[ContactRow], issues: list[ImportIssue]
) -> dict[str, int]:
    """Write one chunk's rows as the mode says; the counts to add to the import. Rows passed
    over while writing (existing contacts in mode create) are added to `issues`."""
    if not rows:
        return {}
    if imp.mode == Import.Mode.SUPPRESS:
        return write_suppressions(imp, rows)
    if imp.mode == Import.Mode.CREATE and not imp.dry_run:
        # No lookup first: the INSERT skips existing addresses (ON CONFLICT DO NOTHING) and
        # returns the ones it created. The lookup cost a third of the import's time.
        return create_new(imp, session, rows, issues)
    existing = existing_contacts(imp.project, [r.email for r in rows])
    if imp.mode == Import.Mode.UNSUBSCRIBE:
        return write_unsubscribes(imp, rows, existing, issues)
    new = [r for r in rows if r.email not in existing]
    counts = {"created": len(new), "updated": 0, "unchanged": 0}
    if imp.mode == Import.Mode.CREATE:  # a dry run
        for row in rows:
            if row.email in existing:
                issues.append(skipped(imp, row, already_a_contact(row)))
        return counts
    updates, counts["unchanged"] = plan_updates(imp, session, rows, existing)
    counts["updated"] = len(updates)
    if imp.dry_run:
        return counts
    apply_updates(session, updates)
    counts["created"] = create_new(imp, session, new, issues)["created"]
    return counts


def create_new(
    imp: Import, session: ImportSession, rows: list[ContactRow], issues: list[ImportIssue]
) -> dict[str, int]:
    created_ids = insert_contacts(imp, rows)
    # A suppression entry erased since names its address again (see restore_addresses).
    restore_addresses(imp.project_id, created_ids)
    for row in rows:
        if row.email not in created_ids:
            issues.append(skipped(imp, row, already_a_contact(row)))
    tag_rows(session, imp, [(created_ids[r.email], r) for r in rows if r.email in created_ids])
    return {"created": len(created_ids)}


def already_a_contact(row: ContactRow) -> str:
    return f"{row.email} is already a contact (this import adds new contacts only)."


def skipped(imp: Import, row: ContactRow, reason: str) -> ImportIssue:
    raw = raw_text(row.record, imp.delimiter) if row.record else ""
    return ImportIssue(
        run=imp, line=row.line, kind=ImportIssue.Kind.SKIPPED, reason=reason[:300], raw=raw
    )


@dataclass
class Existing:
    id: int
    first_name: str
    last_name: str
    data: dict
    status: str
    tag_ids: set[int] = field(default_factory=set)


def existing_contacts(project: Project, emails: list[str]) -> dict[str, Existing]:
    """The project's contacts among `emails`, by address. Raw SQL: the ORM's handling of five
    thousand IN parameters cost more than the query."""
    table = Contact._meta.db_table
    select = f"SELECT email, id, first_name, last_name, data, status FROM {table} "  # noqa: S608
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                select + "WHERE project_id = %s AND email = ANY(%s)", [project.id, emails]
            )
        else:
            marks = ", ".join(["%s"] * len(emails))
            cursor.execute(
                select + f"WHERE project_id = %s AND email IN ({marks})", [project.id, *emails]
            )
        found = cursor.fetchall()
    return {
        email: Existing(
            contact_id, first, last, json.loads(data) if isinstance(data, str) else data, status
        )
        for email, contact_id, first, last, data, status in found
    }


class ContactValues:
    """A new contact's column values for insert_contacts, made from a row. Built in the
    reading thread (ImportSession.next_chunk), so that the main thread, which waits on the
    database, has less Python to run between statements."""

    def __init__(self, imp: Import):
        self.postgres = connection.vendor == "postgresql"
        self.adapt = connection.ops.adapt_datetimefield_value  # pure: no database access
        self.file_name = imp.file_name
        self.consent_times: dict[Any, Any] = {}  # a file repeats its dates: adapt each once
        self.start_chunk()

    def start_chunk(self) -> None:
        self.now = self.adapt(timezone.now())

    def __call__(self, row: ContactRow) -> tuple:
        status = row.status or Status.SUBSCRIBED
        # Time-ordered: the unique index on code then grows at its edge, not at random pages.
        code = uuid7()
        now = self.now
        if status == Status.SUBSCRIBED:
            changed_at, reason = None, ""
            consent_at = self.consent_times.get(row.consent_at) if row.consent_at else now
            if consent_at is None:
                consent_at = self.consent_times[row.consent_at] = self.adapt(row.consent_at)
        else:
            changed_at, consent_at = now, None
            reason = f"Imported as {status} from {self.file_name}"[:200]
        return (
            code if self.postgres else code.hex,
            row.email,
            row.first_name,
            row.last_name,
            json.dumps(row.data) if row.data else "{}",
            status,
            changed_at,
            reason,
            consent_at,
        )


def insert_contacts(imp: Import, rows: list[ContactRow]) -> dict[str, int]:
    """INSERT the new contacts, many to a statement; their ids by address. A contact that
    exists is left alone (ON CONFLICT DO NOTHING) and missing from the result."""
    if not rows:
        return {}
    make = ContactValues(imp)
    values = [row.values or make(row) for row in rows]
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    constants = [imp.project_id, ConsentSource.IMPORT, now, now]
    insert = (
        insert_contacts_postgres if connection.vendor == "postgresql" else insert_contacts_sqlite
    )
    with connection.cursor() as cursor:
        return insert(cursor, values, constants)


CONTACT_COLUMNS = (
    "code, email, first_name, last_name, data, status, status_changed_at, status_reason, "
    "consent_at, project_id, consent_source, created_at, updated_at"
)


def insert_contacts_postgres(cursor, values: list[tuple], constants: list) -> dict[str, int]:
    """One statement for the chunk, each column an array, bound on the server in binary: a
    statement with thousands of %s parameter markers cost psycopg more to parse than the
    server took to run it, and client-side quoting of the arrays (Django's default cursor) as
    much again."""

    table = Contact._meta.db_table
    columns = [list(column) for column in zip(*values, strict=True)]
    with psycopg.Cursor(connection.connection) as binary:
        binary.execute(
            f"INSERT INTO {table} ({CONTACT_COLUMNS}) "  # noqa: S608
            "SELECT c, e, f, l, d::jsonb, s, sc, sr, ca, %s, %s, %s, %s FROM unnest("
            "%b::uuid[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[], "
            "%b::timestamptz[], %b::text[], %b::timestamptz[]) AS u(c, e, f, l, d, s, sc, sr, ca) "
            "ON CONFLICT (project_id, email) DO NOTHING RETURNING id, email",
            [*constants, *columns],
            binary=True,
        )
        return {email: contact_id for contact_id, email in binary.fetchall()}


def insert_contacts_sqlite(cursor, values: list[tuple], constants: list) -> dict[str, int]:
    """One prepared statement run for every row (executemany), then the rows it made: ids
    above the highest before it. Safe because the transaction holds SQLite's one write lock
    (transaction_mode IMMEDIATE) and ids only grow. Multi-row INSERT … RETURNING statements,
    tried first, differ in length from chunk to chunk, and the sqlite3 module keeps a cache of
    128 prepared statements: a million-row import held 70 MB of them."""
    table = Contact._meta.db_table
    cursor.execute(f"SELECT COALESCE(MAX(id), 0) FROM {table}")  # noqa: S608
    (before,) = cursor.fetchone()
    cursor.executemany(
        f"INSERT INTO {table} ({CONTACT_COLUMNS}) VALUES ({', '.join(['%s'] * 13)}) "  # noqa: S608
        "ON CONFLICT (project_id, email) DO NOTHING",
        [(*row, *constants) for row in values],
    )
    cursor.execute(f"SELECT email, id FROM {table} WHERE id > %s", [before])  # noqa: S608
    return dict(cursor.fetchall())


@dataclass
class Update:
    contact_id: int
    existing: Existing
    row: ContactRow
    fields: dict[str, Any]
    new_tag_ids: list[int]


def plan_updates(
    imp: Import, session: ImportSession, rows: list[ContactRow], existing: dict[str, Existing]
) -> tuple[list[Update], int]:
    """For mode upsert: what changes on each existing contact; (changes, unchanged count).
    Empty cells never blank a value; a value is replaced only if its kind may be overwritten,
    else it only fills a blank. Tags are added, never removed."""
    current = [existing[r.email] for r in rows if r.email in existing]
    tag_ids_by_row = {id(r): row_tag_ids(session, imp, r) for r in rows if r.email in existing}
    if any(tag_ids_by_row.values()):
        have = ContactTag.objects.filter(contact_id__in=[c.id for c in current]).values_list(
            "contact_id", "tag_id"
        )
        by_id = {c.id: c for c in current}
        for contact_id, tag_id in have:
            by_id[contact_id].tag_ids.add(tag_id)
    overwrite = set(imp.overwrite)
    updates, unchanged = [], 0
    for row in rows:
        was = existing.get(row.email)
        if was is None:
            continue
        changes: dict[str, Any] = {}
        for name in ("first_name", "last_name"):
            value = getattr(row, name)
            if (
                value
                and value != getattr(was, name)
                and ("names" in overwrite or not getattr(was, name))
            ):
                changes[name] = value
        data = dict(was.data)
        for key, value in row.data.items():
            if data.get(key) != value and ("data" in overwrite or data.get(key) in (None, "")):
                data[key] = value
        if data != was.data:
            changes["data"] = data
        # A suppressed address (bounced, complained) is not resubscribed by a file.
        resubscribes_suppressed = row.status == Status.SUBSCRIBED and was.status in (
            Status.BOUNCED,
            Status.COMPLAINED,
        )
        status_may_change = "status" in overwrite and not resubscribes_suppressed
        if row.status and row.status != was.status and status_may_change:
            changes["status"] = row.status
        new_tags = [t for t in tag_ids_by_row[id(row)] if t not in was.tag_ids]
        if changes or new_tags:
            updates.append(Update(was.id, was, row, changes, new_tags))
        else:
            unchanged += 1
    return updates, unchanged


def apply_updates(session: ImportSession, updates: list[Update]) -> None:
    postgres = connection.vendor == "postgresql"
    adapt = connection.ops.adapt_datetimefield_value
    now = adapt(timezone.now())
    table = Contact._meta.db_table
    changed = [u for u in updates if u.fields]
    with connection.cursor() as cursor:
        if changed:
            cursor.executemany(
                f"UPDATE {table} SET first_name = %s, last_name = %s, "  # noqa: S608
                f"data = {'%s::jsonb' if postgres else '%s'}, status = %s, "
                "status_changed_at = COALESCE(%s, status_changed_at), "
                "status_reason = COALESCE(%s, status_reason), "
                "consent_at = COALESCE(%s, consent_at), "
                "consent_source = COALESCE(%s, consent_source), updated_at = %s WHERE id = %s",
                [update_params(u, now) for u in changed],
            )
    insert_tags([(u.contact_id, tag_id) for u in updates for tag_id in u.new_tag_ids], now)


def update_params(update: Update, now: Any) -> list[Any]:
    was, fields = update.existing, update.fields
    status = fields.get("status", was.status)
    status_changed = "status" in fields
    consented = status_changed and status == Status.SUBSCRIBED
    consent_at = connection.ops.adapt_datetimefield_value(update.row.consent_at) or now
    return [
        fields.get("first_name", was.first_name),
        fields.get("last_name", was.last_name),
        json.dumps(fields.get("data", was.data)),
        status,
        now if status_changed else None,
        f"Set to {status} by an import" if status_changed else None,
        consent_at if consented else None,
        ConsentSource.IMPORT if consented else None,
        now,
        update.contact_id,
    ]


def row_tag_ids(session: ImportSession, imp: Import, row: ContactRow) -> list[int]:
    return tag_ids_for(session, imp, row.tags)


def tag_ids_for(session: ImportSession, imp: Import, names: list[str]) -> list[int]:
    """The ids of the import's own tags and `names`, made if missing (not in a dry run)."""
    names = list(dict.fromkeys([*imp.tags, *names]))
    missing = [n for n in names if n not in session.tag_ids]
    if missing:
        if imp.dry_run:  # the tags that exist, and stand-in ids for those it would make
            existing = Tag.objects.filter(project=imp.project, name__in=missing)
            session.tag_ids.update(existing.values_list("name", "id"))
            for name in missing:
                session.tag_ids.setdefault(name, -1 - len(session.tag_ids))
        else:
            for tag in get_or_create_tags(imp.project, missing):
                session.tag_ids[tag.name] = tag.id
    return [session.tag_ids[n] for n in names]


def tag_rows(session: ImportSession, imp: Import, created: list[tuple[int, ContactRow]]) -> None:
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    pairs = [(contact_id, t) for contact_id, row in created for t in row_tag_ids(session, imp, row)]
    insert_tags(pairs, now)


def insert_tags(pairs: list[tuple[int, int]], now: Any) -> None:
    if not pairs:
        return
    table = ContactTag._meta.db_table
    with connection.cursor() as cursor:
        for start in range(0, len(pairs), INSERT_BATCH * 4):
            batch = pairs[start : start + INSERT_BATCH * 4]
            cursor.execute(
                f"INSERT INTO {table} (contact_id, tag_id, created_at) VALUES "  # noqa: S608
                + ", ".join(["(%s, %s, %s)"] * len(batch))
                + " ON CONFLICT DO NOTHING",
                [value for pair in batch for value in (*pair, now)],
            )


def write_unsubscribes(
    imp: Import, rows: list[ContactRow], existing: dict[str, Existing], issues: list[ImportIssue]
) -> dict[str, int]:
    to_unsubscribe = [
        existing[r.email].id
        for r in rows
        if r.email in existing and existing[r.email].status == Status.SUBSCRIBED
    ]
    for row in rows:
        if row.email not in existing:
            issues.append(skipped(imp, row, f"{row.email} is not a contact."))
    found = sum(1 for r in rows if r.email in existing)
    if to_unsubscribe and not imp.dry_run:
        now = timezone.now()
        Contact.objects.filter(id__in=to_unsubscribe).update(
            status=Status.UNSUBSCRIBED,
            status_changed_at=now,
            status_reason=f"Unsubscribed by an import of {imp.file_name}"[:200],
            updated_at=now,
        )
    return {"updated": len(to_unsubscribe), "unchanged": found - len(to_unsubscribe)}


def write_suppressions(imp: Import, rows: list[ContactRow]) -> dict[str, int]:
    """Entries for the rows' addresses, found by hash as every check finds them: an address
    whose entry was erased is not added twice, and the entry gets it back."""
    by_hash = {hash_email(r.email): r.email for r in rows}
    entries = Suppression.objects.filter(project=imp.project, email_hash__in=list(by_hash))
    found = dict(entries.values_list("email_hash", "email"))
    new = [(digest, email) for digest, email in by_hash.items() if digest not in found]
    if not imp.dry_run:
        note = f"Import of {imp.file_name}"[:200]
        Suppression.objects.bulk_create(
            [Suppression(project=imp.project, email=e, email_hash=d, note=note) for d, e in new],
            ignore_conflicts=True,
            batch_size=INSERT_BATCH,
        )
        restore_addresses(imp.project_id, [by_hash[d] for d, email in found.items() if not email])
    return {"created": len(new), "unchanged": len(found)}


# --- reports and housekeeping ------------------------------------------------------------------


def report_csv(imp: Import) -> Iterator[str]:
    """The rejected and skipped rows in file order as CSV lines (line, result, reason, row),
    in constant memory; cells neutralised against spreadsheet formulas."""
    writer = line_writer()
    yield writer.writerow(["line", "result", "reason", "row"])
    issues = (
        ImportIssue.objects.filter(run=imp)
        .order_by("line", "id")
        .values_list("line", "kind", "reason", "raw")
        .iterator(chunk_size=2000)
    )
    for row in issues:
        yield writer.writerow([safe_cell(value) for value in row])


def prune_imports() -> int:
    """Periodic: remove files of imports finished IMPORT_KEEP_DAYS ago, and drafts left for
    a day (their Import rows and reports stay for the history)."""
    now = timezone.now()
    finished_long_ago = Q(
        state__in=[Import.State.DONE, Import.State.FAILED, Import.State.CANCELLED],
        finished_at__lt=now - td(days=settings.IMPORT_KEEP_DAYS),
    )
    removed = 0
    for imp in Import.objects.filter(finished_long_ago).only("code")[:500]:
        if imp.path.exists():
            imp.path.unlink()
            removed += 1
    stale_drafts = Import.objects.filter(state=Import.State.DRAFT, created_at__lt=now - td(days=1))
    for imp in stale_drafts.only("code")[:500]:
        imp.path.unlink(missing_ok=True)
        removed += 1
    stale_drafts.filter(pk__in=[i.pk for i in stale_drafts[:500]]).delete()
    return removed


def wait_for(imp: Import, run_here: bool = True, poll: float = 0.5, progress=None) -> Import:
    """Until the import finishes: run its chunks in this process (the CLI) when no worker
    holds it, else watch the worker do it. `progress(imp)` is called between chunks."""
    while True:
        imp.refresh_from_db()
        if imp.is_finished():
            return imp
        if progress is not None:
            progress(imp)
        if run_here and handle_one_import(only=imp.pk):
            continue
        time.sleep(poll)
