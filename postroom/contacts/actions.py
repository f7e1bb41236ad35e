"""Multi-step writes on contacts: create, update, tag, bulk actions, suppression, erase."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import re
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db import IntegrityError, InterfaceError, OperationalError, connection, transaction
from django.db.models import F, Func, Q, QuerySet, TextField, Value
from django.db.models.functions import Replace
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.utils import timezone

from postroom.accounts.models import Project, User
from postroom.contacts.models import (
    BulkAction,
    ConsentSource,
    Contact,
    ContactTag,
    FieldDefinition,
    FieldType,
    Segment,
    Status,
    Suppression,
    Tag,
    tagged_with,
)
from postroom.lib.emails import InvalidEmail, hash_email, lookup_email, normalise_email
from postroom.lib.leases import LeaseLost, update_while_leased
from postroom.webhooks.actions import emit
from postroom.webhooks.payloads import contact_data

log = logging.getLogger(__name__)


class FullName(Func):
    """The name as "first last", to search in: on PostgreSQL in capitals, written as the
    trigram index of contacts migration 0004 is, so that a search can use it; on SQLite as it
    is (its LIKE ignores the case of ASCII letters, and its UPPER knows no others)."""

    arg_joiner = " || "
    template = "(%(expressions)s)"
    output_field = TextField()

    def __init__(self) -> None:
        super().__init__(F("first_name"), Value(" "), F("last_name"))

    def as_postgresql(self, compiler, connection, **extra):
        return self.as_sql(compiler, connection, template="UPPER((%(expressions)s)::text)", **extra)


MAX_TAGS_PER_CONTACT = 100
# Custom fields a project may have: the API creates them from unknown data keys, and the
# public key (in web pages) can send any key.
MAX_FIELDS = 200
MAX_TAG_LENGTH = 100


class ContactError(ValueError):
    """Bad contact input; `field` names the field at fault ("email", "data.age", "tags")."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


class DuplicateContact(ContactError):
    pass


# --- filters ---------------------------------------------------------------------------------


@dataclass
class ContactFilter:
    """The contacts list's search and filters, also what a bulk action applies to."""

    q: str = ""
    status: str = ""
    tag: str = ""

    @classmethod
    def from_dict(cls, data: Any) -> ContactFilter:
        status = data.get("status", "") or ""
        return cls(
            q=(data.get("q", "") or "").strip()[:200],
            status=status if status in Status.values else "",
            tag=(data.get("tag", "") or "").strip()[:MAX_TAG_LENGTH],
        )

    def as_dict(self) -> dict:
        return {"q": self.q, "status": self.status, "tag": self.tag}

    def is_empty(self) -> bool:
        return not (self.q or self.status or self.tag)

    def apply(self, qs: QuerySet[Contact], project: Project) -> QuerySet[Contact]:
        if self.q:
            needle = self.q.lower()
            if "@" in needle:
                # Looks like an address: search only the (lower-case) email column.
                qs = qs.filter(email__contains=needle)
            else:
                # The whole name, so that "Ann Lee" finds Ann Lee; on PostgreSQL the same
                # expression has a trigram index (contacts migration 0004).
                words = self.q.upper() if connection.vendor == "postgresql" else self.q
                qs = qs.annotate(search_name=FullName()).filter(
                    Q(email__contains=needle) | Q(search_name__contains=words)
                )
        if self.status:
            qs = qs.filter(status=self.status)
        if self.tag:
            qs = qs.filter(tagged_with(project, self.tag))
        return qs


def filtered_contacts(project: Project, contact_filter: ContactFilter) -> QuerySet[Contact]:
    return contact_filter.apply(Contact.objects.filter(project=project), project)


# --- single contacts ---------------------------------------------------------------------------


def clean_email(raw: str) -> str:
    try:
        return normalise_email(raw)
    except InvalidEmail as e:
        raise ContactError("email", str(e)) from None


def clean_tag_names(names: Iterable[str]) -> list[str]:
    cleaned: list[str] = []
    for name in names:
        name = (name or "").strip()
        if not name:
            continue
        if len(name) > MAX_TAG_LENGTH:
            raise ContactError(
                "tags", f"tag {name[:20]!r}… is longer than {MAX_TAG_LENGTH} characters."
            )
        if name not in cleaned:
            cleaned.append(name)
    if len(cleaned) > MAX_TAGS_PER_CONTACT:
        raise ContactError("tags", f"a contact has at most {MAX_TAGS_PER_CONTACT} tags.")
    return cleaned


def infer_field_type(value: Any) -> str:
    if isinstance(value, bool):
        return FieldType.BOOLEAN
    if isinstance(value, int | float):
        return FieldType.NUMBER
    return FieldType.TEXT


def clean_data(project: Project, data: Any, *, create_fields: bool) -> dict[str, Any]:
    """Custom data checked against the project's field definitions.

    Returns {key: stored value or None (None removes the key)}. Unknown keys become new
    text/number/boolean fields when create_fields is set (the API), else are an error.
    """
    if not isinstance(data, dict):
        raise ContactError("data", "must be an object of field names to values.")
    definitions = field_definitions(project)
    cleaned: dict[str, Any] = {}
    for key, value in data.items():
        definition = definitions.get(key)
        if definition is None:
            if not create_fields:
                raise ContactError(f"data.{key}", "there is no such custom field in this project.")
            if isinstance(value, dict | list):
                raise ContactError(f"data.{key}", "must be text, a number, a date or true/false.")
            if FieldDefinition.objects.filter(project=project).count() >= MAX_FIELDS:
                raise ContactError(
                    f"data.{key}",
                    f"the project has {MAX_FIELDS} custom fields, the most it may have: "
                    "use one of them, or remove one first.",
                )
            definition = create_field(project, key, label=key, field_type=infer_field_type(value))
        try:
            cleaned[key] = definition.coerce(value)
        except ValueError as e:
            raise ContactError(f"data.{key}", str(e).split(": ", 1)[-1]) from None
    return cleaned


# Each project's field definitions as this process read them in the last few seconds: every
# track call checks its data against them. Read outside transactions only, so that what is
# kept was committed; saving or deleting a definition empties it here at once, and other
# processes see the change within FIELDS_CACHE_SECONDS (a new key meanwhile finds its
# definition through create_field's get_or_create). Keyed by the project's public code.
FIELDS_CACHE_SECONDS = 5.0
_recent_fields: dict[uuid.UUID, tuple[float, dict[str, FieldDefinition]]] = {}


def outside_transactions() -> bool:
    return not connection.in_atomic_block


def field_definitions(project: Project) -> dict[str, FieldDefinition]:
    if not outside_transactions():
        return {f.key: f for f in FieldDefinition.objects.filter(project=project)[:1000]}
    now = time.monotonic()
    cached = _recent_fields.get(project.code)
    if cached is None or cached[0] <= now:
        if len(_recent_fields) > 1000:
            _recent_fields.clear()
        definitions = {f.key: f for f in FieldDefinition.objects.filter(project=project)[:1000]}
        cached = _recent_fields[project.code] = (now + FIELDS_CACHE_SECONDS, definitions)
    return cached[1]


@receiver([post_save, post_delete], sender=FieldDefinition)
def forget_field_definitions(**kwargs) -> None:
    _recent_fields.clear()


CAMEL_HUMP = re.compile(r"(?<=[a-z0-9])([A-Z])")


def field_key(name: str) -> str:
    """A data key as sent to the API (Plunk's camelCase) as our custom field key:
    firstName -> first_name, Plan -> plan, "sign-up date" -> sign_up_date."""
    return re.sub(r"[\s-]+", "_", CAMEL_HUMP.sub(r"_\1", name.strip())).lower()


def api_data(data: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, str]]:
    """Data as sent to the API (Plunk's camelCase keys) as our field keys, and the names
    inside it (firstName, lastName) that are the contact's own fields."""
    fields: dict[str, Any] = {}
    names: dict[str, str] = {}
    for key, value in (data or {}).items():
        our_key = field_key(key)
        if our_key in ("first_name", "last_name"):
            names[our_key] = "" if value is None else str(value)
        else:
            fields[our_key] = value
    return fields, names


# A letter, then letters, digits and single underscores: safe in JSON paths and templates.
FIELD_KEY = re.compile(r"^[a-z](?:_?[a-z0-9])*$")


def create_field(project: Project, key: str, label: str, field_type: str) -> FieldDefinition:
    if not FIELD_KEY.match(key or "") or len(key) > 64:
        raise ContactError(
            f"data.{key}" if key else "key",
            "a field key starts with a letter and uses lower-case letters, digits and single "
            "underscores (at most 64), e.g. signup_date.",
        )
    if field_type not in FieldType.values:
        raise ContactError("type", f"must be one of {FieldType.values}.")
    definition, created = FieldDefinition.objects.get_or_create(
        project=project, key=key, defaults={"label": label[:100] or key, "type": field_type}
    )
    if not created:
        # Made meanwhile by another process (or request): this process's cached definitions
        # predate it. Read again, else every call naming the key comes here until the cache
        # expires (a track burst paid a query each for 5 s, bench/api.py).
        _recent_fields.pop(project.code, None)
    return definition


def _merge_data(current: dict, changes: dict[str, Any]) -> dict:
    merged = dict(current)
    for key, value in changes.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


@transaction.atomic
def create_contact(
    project: Project,
    email: str,
    *,
    first_name: str = "",
    last_name: str = "",
    status: str = Status.SUBSCRIBED,
    data: dict | None = None,
    tags: Iterable[str] = (),
    consent_source: str = ConsentSource.MANUAL,
    consent_ip: str | None = None,
    create_fields: bool = False,
) -> Contact:
    email = clean_email(email)
    if status not in Status.values:
        raise ContactError("status", f"must be one of {Status.values}.")
    tag_names = clean_tag_names(tags)
    cleaned = clean_data(project, data or {}, create_fields=create_fields)
    now = timezone.now()
    contact = Contact(
        project=project,
        email=email,
        first_name=_short("first_name", first_name),
        last_name=_short("last_name", last_name),
        status=status,
        data=_merge_data({}, cleaned),
        created_at=now,
        updated_at=now,
    )
    if status == Status.SUBSCRIBED:
        contact.consent_at, contact.consent_source, contact.consent_ip = (
            now,
            consent_source,
            consent_ip,
        )
    try:
        with transaction.atomic():
            contact.save()
    except IntegrityError:
        raise DuplicateContact("email", f"{email} is already a contact of this project.") from None
    set_tags(contact, tag_names)
    restore_addresses(project.id, [email])
    emit(project.id, "contact.created", contact_data(contact))
    return contact


def _short(field_name: str, value: str | None, limit: int = 100) -> str:
    value = (value or "").strip()
    if len(value) > limit:
        raise ContactError(field_name, f"at most {limit} characters.")
    if any(c in value for c in "\r\n"):
        raise ContactError(field_name, "must be a single line.")
    return value


@dataclass
class ContactChanges:
    """What update_contact may change; fields left as None stay as they are."""

    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    status: str | None = None
    status_reason: str = ""
    data: dict | None = None
    replace_data: bool = False
    tags: list[str] | None = None


@transaction.atomic
def update_contact(
    contact: Contact, changes: ContactChanges, *, create_fields: bool = False
) -> Contact:
    was_subscribed = contact.status == Status.SUBSCRIBED
    if changes.email is not None:
        contact.email = clean_email(changes.email)
    if changes.first_name is not None:
        contact.first_name = _short("first_name", changes.first_name)
    if changes.last_name is not None:
        contact.last_name = _short("last_name", changes.last_name)
    if changes.status is not None:
        if changes.status not in Status.values:
            raise ContactError("status", f"must be one of {Status.values}.")
        contact.set_status(changes.status, changes.status_reason or "Changed by hand")
    if changes.data is not None:
        cleaned = clean_data(contact.project, changes.data, create_fields=create_fields)
        contact.data = _merge_data({} if changes.replace_data else contact.data, cleaned)
    contact.updated_at = timezone.now()
    try:
        with transaction.atomic():
            contact.save()
    except IntegrityError:
        raise DuplicateContact("email", f"{contact.email} is already another contact.") from None
    if changes.tags is not None:
        set_tags(contact, clean_tag_names(changes.tags))
    if changes.email is not None:
        restore_addresses(contact.project_id, [contact.email])
    emit(contact.project_id, "contact.updated", contact_data(contact))
    if was_subscribed and contact.status == Status.UNSUBSCRIBED:
        emit(contact.project_id, "contact.unsubscribed", contact_data(contact))
    return contact


@dataclass
class Upsert:
    """What the API's track and send know about a contact they may create (upsert_contact).
    `subscribed` None leaves an existing contact's status as it is."""

    subscribed: bool | None = None
    subscribed_if_new: bool = True
    first_name: str | None = None
    last_name: str | None = None
    data: dict = field(default_factory=dict)  # key -> value, None removes the key
    how: str = "the API"
    consent_ip: str | None = None


def upsert_contact(project: Project, email: str, upsert: Upsert) -> tuple[Contact, bool]:
    """The project's contact with `email`, created if there is none (True), else changed as
    `upsert` says; written only when something changed. Raises ContactError naming the field.
    Two requests creating the same contact at once end with one contact."""
    email = clean_email(email)
    cleaned = clean_data(project, upsert.data, create_fields=True) if upsert.data else {}
    names = {
        name: _short(name, value)
        for name, value in (("first_name", upsert.first_name), ("last_name", upsert.last_name))
        if value is not None
    }
    contact = Contact.objects.filter(project=project, email=email).first()
    if contact is None:
        subscribed = upsert.subscribed_if_new if upsert.subscribed is None else upsert.subscribed
        now = timezone.now()
        contact = Contact(project=project, email=email, data=_merge_data({}, cleaned), **names)
        contact.created_at = contact.updated_at = now
        if subscribed:
            contact.consent_at, contact.consent_source = now, ConsentSource.API
            contact.consent_ip = upsert.consent_ip
        else:
            contact.status, contact.status_changed_at = Status.UNSUBSCRIBED, now
            contact.status_reason = f"Never subscribed: added by {upsert.how}"[:200]
        try:
            with transaction.atomic():
                contact.save()
                emit(project.id, "contact.created", contact_data(contact))
            return contact, True
        except IntegrityError:  # created by a request running beside this one
            contact = Contact.objects.get(project=project, email=email)
    _apply_upsert(contact, upsert, names, cleaned)
    return contact, False


# The columns a new contact gets, in UPSERT_SQL's order (contact_upsert's parameters begin
# with them; the same time is its updated_at), and where its data patch is among them.
NEW_CONTACT_COLUMNS = [
    "project_id",
    "code",
    "email",
    "first_name",
    "last_name",
    "data",
    "status",
    "status_changed_at",
    "status_reason",
    "consent_at",
    "consent_source",
    "consent_ip",
    "created_at",
]
NEW_DATA_AT = NEW_CONTACT_COLUMNS.index("data")
PROJECT_AT, EMAIL_AT = NEW_CONTACT_COLUMNS.index("project_id"), NEW_CONTACT_COLUMNS.index("email")
# The SET's first parameter, after the new row's values and its updated_at.
DATA_PATCH_AT = len(NEW_CONTACT_COLUMNS) + 1


# upsert_contact_row's statement. A conflict's SET reads the row as it was: {table}.status
# is the status before this write. {merge} folds the data patch in (a null removes a key).
UPSERT_SQL = """
INSERT INTO {table} ({columns}, updated_at)
VALUES (%s, %s, %s, %s, %s, {data}, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (project_id, email) DO UPDATE SET
    first_name = COALESCE(NULLIF(excluded.first_name, ''), {table}.first_name),
    last_name = COALESCE(NULLIF(excluded.last_name, ''), {table}.last_name),
    data = {merge},
    status = CASE WHEN {up} THEN 'subscribed' WHEN {down} THEN 'unsubscribed'
        ELSE {table}.status END,
    status_changed_at = CASE WHEN {up} OR {down} THEN %s ELSE {table}.status_changed_at END,
    status_reason = CASE WHEN {up} THEN %s WHEN {down} THEN %s ELSE {table}.status_reason END,
    consent_at = CASE WHEN {up} THEN %s ELSE {table}.consent_at END,
    consent_source = CASE WHEN {up} THEN 'api' ELSE {table}.consent_source END,
    consent_ip = CASE WHEN {up} THEN %s ELSE {table}.consent_ip END,
    updated_at = CASE WHEN %s THEN %s ELSE {table}.updated_at END
RETURNING id, code, created_at = %s
"""


def upsert_contact_row(project: Project, email: str, upsert: Upsert) -> tuple[int, uuid.UUID]:
    """What upsert_contact does, in one statement (INSERT … ON CONFLICT … DO UPDATE …
    RETURNING), for the track API's hot path: the ORM's reading, comparing and saving cost a
    request several times the work. upsert_contact stays the reference the tests hold this
    to. Returns the contact's id and code; raises ContactError naming the field."""
    contact_id, contact_code, _ = run_contact_upsert(contact_upsert(project, email, upsert))
    return contact_id, contact_code


def run_contact_upsert(statement: tuple[str, list]) -> tuple[int, uuid.UUID, bool]:
    """The contact's id and code, and whether this statement created it (its created_at is
    the statement's own time)."""
    with connection.cursor() as cursor:
        cursor.execute(*statement)
        contact_id, contact_code, created = cursor.fetchone()
    if isinstance(contact_code, str):  # SQLite keeps UUIDs as hex
        contact_code = uuid.UUID(contact_code)
    return contact_id, contact_code, bool(created)


def contact_upsert(project: Project, email: str, upsert: Upsert) -> tuple[str, list]:
    """upsert_contact_row's statement and parameters, every input checked (ContactError):
    made before a transaction starts, so that it holds the writes alone."""
    email = clean_email(email)
    cleaned = clean_data(project, upsert.data, create_fields=True) if upsert.data else {}
    names = {
        name: _short(name, value)
        for name, value in (("first_name", upsert.first_name), ("last_name", upsert.last_name))
    }
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    subscribed = upsert.subscribed_if_new if upsert.subscribed is None else upsert.subscribed
    # The new contact's status and consent, as upsert_contact makes them.
    if subscribed:
        status, changed_at, reason = Status.SUBSCRIBED, None, ""
        consent = (now, ConsentSource.API, upsert.consent_ip)
    else:
        status, changed_at = Status.UNSUBSCRIBED, now
        reason, consent = f"Never subscribed: added by {upsert.how}"[:200], (None, "", None)
    postgres = connection.vendor == "postgresql"
    sql = upsert_sql(postgres, {True: "up", False: "down", None: ""}[upsert.subscribed])
    code = uuid.uuid4()
    changed = bool(cleaned or any(names.values()) or upsert.subscribed is not None)
    params = [
        project.id,
        code if postgres else code.hex,
        email,
        names["first_name"],
        names["last_name"],
        json.dumps(_merge_data({}, cleaned)),
        status,
        changed_at,
        reason,
        *consent,
        now,
        now,
        json.dumps(cleaned),
        now,
        f"Subscribed through {upsert.how}"[:200],
        f"Unsubscribed through {upsert.how}"[:200],
        now,
        upsert.consent_ip,
        changed,
        now,
        now,  # RETURNING's "created": a new row's created_at is this
    ]
    return sql, params


@functools.cache
def upsert_sql(postgres: bool, flip: str) -> str:
    """UPSERT_SQL for the database and the change of status asked ("up", "down" or "")."""
    table = Contact._meta.db_table
    return UPSERT_SQL.format(
        table=table,
        columns=", ".join(NEW_CONTACT_COLUMNS),
        data="%s::jsonb" if postgres else "%s",
        merge=f"jsonb_strip_nulls({table}.data || %s::jsonb)"
        if postgres
        else f"json_patch({table}.data, %s)",
        up=f"('{flip}' = 'up' AND {table}.status = 'unsubscribed')",
        down=f"('{flip}' = 'down' AND {table}.status = 'subscribed')",
    )


def upserts_in_bulk(statement: tuple[str, list]) -> bool:
    """Whether a contact_upsert statement is the plain kind that may be written together with
    others as rows of one statement (new_contact_row): it asks no change of status, and its
    data removes no field (a new contact's data is then the patch itself). A conflict then
    changes the names given, merges the data, and moves updated_at if it gave either."""
    sql, params = statement
    return sql == upsert_sql(True, "") and params[NEW_DATA_AT] == params[DATA_PATCH_AT]


def upserted_contact(statement: tuple[str, list]) -> tuple[int, str]:
    """The project id and address of the contact a contact_upsert statement writes."""
    params = statement[1]
    return params[PROJECT_AT], params[EMAIL_AT]


def new_contact_row(statement: tuple[str, list]) -> list:
    """The new contact's values of a plain upsert (upserts_in_bulk), in NEW_CONTACT_COLUMNS's
    order: a row of the one statement that writes many."""
    return statement[1][: len(NEW_CONTACT_COLUMNS)]


UPSERTED_FIELDS = [
    "status",
    "status_changed_at",
    "status_reason",
    "consent_at",
    "consent_source",
    "consent_ip",
    "first_name",
    "last_name",
    "data",
    "updated_at",
]


def _apply_upsert(contact: Contact, upsert: Upsert, names: dict, cleaned: dict) -> None:
    before = (contact.status, contact.first_name, contact.last_name, contact.data)
    for name, value in names.items():
        if value:  # an empty name leaves the one we have
            setattr(contact, name, value)
    contact.data = _merge_data(contact.data, cleaned)
    if upsert.subscribed is True and contact.status == Status.UNSUBSCRIBED:
        # Bounced and complained addresses stay as they are: they are suppressed.
        contact.set_status(Status.SUBSCRIBED, f"Subscribed through {upsert.how}")
        contact.consent_at, contact.consent_source = timezone.now(), ConsentSource.API
        contact.consent_ip = upsert.consent_ip
    elif upsert.subscribed is False and contact.status == Status.SUBSCRIBED:
        contact.set_status(Status.UNSUBSCRIBED, f"Unsubscribed through {upsert.how}")
    if (contact.status, contact.first_name, contact.last_name, contact.data) != before:
        contact.updated_at = timezone.now()
        # Only what this call may change: a write beside it (a track's data) is kept.
        contact.save(update_fields=UPSERTED_FIELDS)


def subscribe(contact: Contact, reason: str, consent_ip: str | None = None) -> None:
    """Marketing mail again, with consent recorded now. A bounced or complained address
    stays as it is: raises ContactError (it is on the suppression list for a reason)."""
    if contact.status in (Status.BOUNCED, Status.COMPLAINED):
        raise ContactError(
            "status",
            f"{contact.email} is {contact.status}: it cannot be subscribed while suppressed.",
        )
    if contact.status != Status.SUBSCRIBED:
        contact.set_status(Status.SUBSCRIBED, reason)
        contact.consent_at, contact.consent_source = timezone.now(), ConsentSource.API
        contact.consent_ip = consent_ip
        contact.updated_at = timezone.now()
        contact.save()
    Suppression.objects.filter(
        project_id=contact.project_id,
        email_hash=hash_email(contact.email),
        reason=Suppression.Reason.UNSUBSCRIBED,
    ).delete()


def unsubscribe(contact: Contact, reason: str) -> None:
    if contact.status == Status.SUBSCRIBED:
        contact.set_status(Status.UNSUBSCRIBED, reason)
        contact.updated_at = timezone.now()
        with transaction.atomic():
            contact.save(
                update_fields=["status", "status_changed_at", "status_reason", "updated_at"]
            )
            emit(contact.project_id, "contact.unsubscribed", contact_data(contact))


def get_or_create_tags(project: Project, names: list[str]) -> list[Tag]:
    existing = {t.name: t for t in Tag.objects.filter(project=project, name__in=names)}
    missing = [Tag(project=project, name=n) for n in names if n not in existing]
    if missing:
        Tag.objects.bulk_create(missing, ignore_conflicts=True)
        existing = {t.name: t for t in Tag.objects.filter(project=project, name__in=names)}
    return [existing[n] for n in names]


def add_tags(contact: Contact, names: Iterable[str]) -> set[str]:
    """The tags on the contact beside those it has; the automations triggered by the ones it
    did not have start (a tag it already had is not "added": no loop of tag triggers).
    Returns the names added."""
    from postroom.automations.actions import tags_added

    names = list(dict.fromkeys(names))
    if not names:
        return set()
    tags = get_or_create_tags(contact.project, names)
    had = set(
        ContactTag.objects.filter(contact=contact, tag__in=tags).values_list("tag_id", flat=True)
    )
    new = [t for t in tags if t.id not in had]
    ContactTag.objects.bulk_create(
        [ContactTag(contact=contact, tag=t) for t in new], ignore_conflicts=True
    )
    added = {t.name for t in new}
    tags_added(contact.project_id, [contact.id], added)
    return added


def set_tags(contact: Contact, names: list[str]) -> None:
    from postroom.automations.actions import tags_added

    tags = get_or_create_tags(contact.project, names)
    had = set(ContactTag.objects.filter(contact=contact).values_list("tag__name", flat=True))
    ContactTag.objects.filter(contact=contact).exclude(tag__in=tags).delete()
    ContactTag.objects.bulk_create(
        [ContactTag(contact=contact, tag=t) for t in tags], ignore_conflicts=True
    )
    tags_added(contact.project_id, [contact.id], set(names) - had)


# --- erase -----------------------------------------------------------------------------------

# What an erased message's address becomes: the .invalid domain can never receive mail.
ERASED_ADDRESS = "erased@erased.invalid"
# Messages erased per statement: their ids are parameters (SQLite takes 32,766 at most).
ERASE_BATCH = 1000


@dataclass
class Erasure:
    """What erase_contact did: the API's answer, the dashboard's message."""

    messages: int = 0  # messages whose address, name and data were removed
    cancelled: int = 0  # of those, the ones not sent yet, now cancelled
    events_deleted: int = 0  # the contact's custom events (and any without a message)
    events_anonymised: int = 0  # email events kept for the reports, leading to no one
    suppressions: int = 0  # suppression entries now holding the address's hash alone


@transaction.atomic
def erase_contact(contact: Contact) -> Erasure:
    """Delete the contact and whatever leads back to their person elsewhere; no undo.

    The rows are contacts.privacy's (the export's): the contact's, and the messages sent to
    their address without them, with those messages' events. Mail not sent yet is cancelled;
    the ledger keeps each message's fate, not its address, name or data, and Mailbox copies
    go. Custom events go; email events (sent, opened, clicked, ...) stay, so that campaign
    reports do not change, but lead to no one. Suppression entries of the address keep only
    its hash: an address that bounced or complained stays suppressed if it comes back."""
    from postroom.contacts.privacy import messages_of, signups_of, suppressions_of
    from postroom.tracking.models import Event

    erasure = Erasure()
    address = contact.email
    ids = list(messages_of(contact).values_list("id", flat=True))
    for start in range(0, len(ids), ERASE_BATCH):
        _erase_messages(erasure, ids[start : start + ERASE_BATCH], address)
    _, deleted = Event.objects.filter(contact=contact).delete()
    erasure.events_deleted = deleted.get("tracking.Event", 0)
    erasure.suppressions = suppressions_of(contact).update(
        email="", note=f"Address erased on {timezone.localdate().isoformat()}."
    )
    _erase_import_reports(contact.project_id, address)
    signups_of(contact).delete()  # their consent records name the address and the IP
    contact.delete()  # its automation runs go with it
    return erasure


def _scrubbed(column: str, address: str) -> Replace:
    """`column` with the address, as written or as a URL carries it, made ERASED_ADDRESS:
    a relay's answer or a personalised link may name it."""
    plain = Replace(F(column), Value(address), Value(ERASED_ADDRESS))
    return Replace(plain, Value(address.replace("@", "%40")), Value(ERASED_ADDRESS))


def _erase_messages(erasure: Erasure, ids: list[int], address: str) -> None:
    from postroom.delivery.models import MailboxMessage, Message
    from postroom.tracking.models import Event

    messages = Message.objects.filter(id__in=ids)
    erasure.cancelled += messages.filter(
        state__in=[Message.State.QUEUED, Message.State.DEFERRED]
    ).update(
        state=Message.State.CANCELLED,
        last_response="Cancelled: the contact was erased.",
        updated_at=timezone.now(),
    )
    email_events = Event.objects.filter(message_id__in=ids).exclude(kind=Event.Kind.CUSTOM)
    erasure.events_anonymised += email_events.update(
        contact=None, data={}, user_agent="", url=_scrubbed("url", address)
    )
    MailboxMessage.objects.filter(message_id__in=ids).delete()
    erasure.messages += messages.update(
        to_email=ERASED_ADDRESS,
        to_name="",
        data={},
        last_response=_scrubbed("last_response", address),
    )


def _erase_import_reports(project_id: int, address: str) -> None:
    """Rows an import turned away keep their line of the file: those naming the address
    lose it. (Import files themselves are deleted IMPORT_KEEP_DAYS after their import.)"""
    from postroom.imports.models import ImportIssue

    ImportIssue.objects.filter(run__project_id=project_id).filter(
        Q(raw__icontains=address) | Q(reason__icontains=address)
    ).update(raw="", reason="(This row named an address erased since.)")


# --- suppression -------------------------------------------------------------------------------


def suppress(
    project: Project, email: str, reason: str = Suppression.Reason.MANUAL, note: str = ""
) -> Suppression:
    suppression = suppress_address(project.id, clean_email(email), reason, note)
    assert suppression is not None  # clean_email never gives ERASED_ADDRESS (.invalid)
    return suppression


def suppress_address(
    project_id: int, address: str, reason: str, note: str = ""
) -> Suppression | None:
    """Put a normalised address on the suppression list, unless it is there already (an
    entry erased since gets its address back); None for a message's erased address."""
    if address == ERASED_ADDRESS:
        return None
    suppression, created = Suppression.objects.get_or_create(
        project_id=project_id,
        email_hash=hash_email(address),
        defaults={"email": address, "reason": reason, "note": note[:200]},
    )
    if not created and suppression.is_erased:
        Suppression.objects.filter(pk=suppression.pk, email="").update(email=address)
        suppression.email = address
    return suppression


def suppression_of(project_id: int, address: str) -> Suppression | None:
    """The suppression entry of a normalised address, erased or not."""
    return Suppression.objects.filter(project_id=project_id, email_hash=hash_email(address)).first()


def restore_addresses(project_id: int, addresses: Iterable[str]) -> int:
    """Erased suppression entries of these normalised addresses get them back: the project
    has the address again (a contact was created or imported with it, a message is sent to
    it), and the campaign audience (campaigns.actions.recipients), which leaves suppressed
    addresses out in SQL, can only match an address. Returns how many came back."""
    addresses = [a for a in addresses if a and a != ERASED_ADDRESS]
    erased = Suppression.objects.filter(project_id=project_id, email="")
    if not addresses or not erased.exists():  # the usual case, answered by the partial index
        return 0
    by_hash = {hash_email(a): a for a in addresses}
    hashes = list(by_hash)
    restored = 0
    for start in range(0, len(hashes), ERASE_BATCH):
        found = erased.filter(email_hash__in=hashes[start : start + ERASE_BATCH])
        for row_id, digest in found.values_list("id", "email_hash"):
            restored += erased.filter(id=row_id).update(email=by_hash[digest])
    return restored


def search_suppressions(project: Project, q: str) -> QuerySet[Suppression]:
    """The suppression list, narrowed to the addresses containing `q`. A whole address also
    finds its entry when erased (by hash), so "why is mail to X skipped?" has an answer."""
    entries = Suppression.objects.filter(project=project)
    q = q.strip().lower()
    if not q:
        return entries
    match = Q(email__contains=q)
    address = lookup_email(q)
    if address is not None:
        match |= Q(email_hash=hash_email(address))
    return entries.filter(match)


def unsuppress(suppression: Suppression) -> None:
    suppression.delete()


# --- bulk actions ------------------------------------------------------------------------------

# Contacts handled per transaction by the worker: big enough to be set-based and quick,
# small enough that a killed worker loses at most a few seconds of work.
BULK_CHUNK = 2000


def validate_bulk(kind: str, tag_name: str) -> str:
    if kind not in BulkAction.Kind.values:
        raise ContactError("action", f"must be one of {BulkAction.Kind.values}.")
    if kind in (BulkAction.Kind.TAG, BulkAction.Kind.UNTAG):
        names = clean_tag_names([tag_name])
        if not names:
            raise ContactError("tag", "name the tag to add or remove.")
        return names[0]
    return ""


def apply_bulk(project: Project, kind: str, tag_name: str, ids: list[int]) -> int:
    """Apply one bulk action to contacts by internal id, set-based. Returns how many."""
    contacts = Contact.objects.filter(project=project, id__in=ids)
    now = timezone.now()
    if kind == BulkAction.Kind.DELETE:
        ContactTag.objects.filter(contact__in=contacts).delete()
        deleted, per_model = contacts.delete()
        return per_model.get("contacts.Contact", 0)
    if kind == BulkAction.Kind.UNSUBSCRIBE:
        contacts.filter(status=Status.SUBSCRIBED).update(
            status=Status.UNSUBSCRIBED,
            status_changed_at=now,
            status_reason="Bulk unsubscribe",
            updated_at=now,
        )
        return len(ids)
    (tag,) = get_or_create_tags(project, [tag_name])
    if kind == BulkAction.Kind.TAG:
        from postroom.automations.actions import tags_added

        had = set(
            ContactTag.objects.filter(tag=tag, contact__in=contacts).values_list(
                "contact_id", flat=True
            )
        )
        new = [i for i in contacts.values_list("id", flat=True) if i not in had]
        ContactTag.objects.bulk_create(
            [ContactTag(contact_id=i, tag=tag) for i in new],
            ignore_conflicts=True,
            batch_size=1000,
        )
        tags_added(project.id, new, [tag_name])
    else:
        ContactTag.objects.filter(tag=tag, contact__in=contacts).delete()
    return len(ids)


@transaction.atomic
def bulk_on_selection(project: Project, kind: str, tag_name: str, codes: list[str]) -> int:
    """A bulk action on contacts picked by hand (one page at most): done in the request."""
    tag_name = validate_bulk(kind, tag_name)
    valid_codes = []
    for code in codes[:500]:
        with contextlib.suppress(ValueError):
            valid_codes.append(uuid.UUID(str(code)))
    contacts = Contact.objects.filter(project=project, code__in=valid_codes)
    return apply_bulk(project, kind, tag_name, list(contacts.values_list("id", flat=True)))


def queue_bulk_action(
    project: Project, kind: str, tag_name: str, contact_filter: ContactFilter, user: User | None
) -> BulkAction:
    """A bulk action on every contact matching a filter: a row the worker will run."""
    tag_name = validate_bulk(kind, tag_name)
    return BulkAction.objects.create(
        project=project,
        kind=kind,
        tag_name=tag_name,
        filters=contact_filter.as_dict(),
        created_by=user,
    )


def claim_bulk_action() -> BulkAction | None:
    """Claim one pending bulk action, or one whose worker died (lease expired).

    The claimed row's `lease_until` is this worker's token: every later write is conditional
    on it, so a worker that stalled past its lease cannot overwrite its successor's work.
    """
    now = timezone.now()
    candidates = BulkAction.objects.filter(
        Q(state=BulkAction.State.PENDING)
        | Q(state=BulkAction.State.RUNNING, lease_until__lt=now)
        | Q(state=BulkAction.State.RUNNING, lease_until=None)
    ).order_by("created_at")
    for action in candidates[:5]:
        claimed = BulkAction.objects.filter(
            pk=action.pk, state=action.state, lease_until=action.lease_until
        ).update(state=BulkAction.State.RUNNING, lease_until=now + BulkAction.LEASE)
        if claimed == 1:  # else another worker got there first
            action.refresh_from_db()
            return action
    return None


def _while_leased(action: BulkAction, **changes) -> None:
    """Write `changes` only if this worker still holds the lease; else raise LeaseLost."""
    held = BulkAction.objects.filter(pk=action.pk, lease_until=action.lease_until)
    update_while_leased(held, **changes)


def handle_one_bulk_action() -> bool:
    """Worker step: run one chunk of one bulk action. True when there was work."""
    action = claim_bulk_action()
    if action is None:
        return False
    try:
        run_bulk_chunk(action)
    except LeaseLost:
        log.warning("bulk action %s: lease lost to another worker, chunk rolled back", action.code)
    except (OperationalError, InterfaceError):
        # The database is busy or went away: nothing was committed for this chunk. Leave the
        # job RUNNING; its lease runs out and a worker (maybe this one) takes it up again.
        log.warning("bulk action %s: database error, will retry", action.code, exc_info=True)
        return False
    except Exception as e:
        log.exception("bulk action %s failed", action.code)
        with contextlib.suppress(LeaseLost):
            _while_leased(
                action,
                state=BulkAction.State.FAILED,
                error=str(e)[:500],
                finished_at=timezone.now(),
                lease_until=None,
            )
    return True


def run_bulk_chunk(action: BulkAction) -> None:
    contact_filter = ContactFilter.from_dict(action.filters)
    matching = filtered_contacts(action.project, contact_filter)
    if action.total is None:
        action.total = matching.count()
        action.started_at = timezone.now()
        _while_leased(action, total=action.total, started_at=action.started_at)
    page = matching.order_by("-id")
    if action.cursor is not None:
        page = page.filter(id__lt=action.cursor)
    ids = list(page.values_list("id", flat=True)[:BULK_CHUNK])
    with transaction.atomic():
        if ids:
            apply_bulk(action.project, action.kind, action.tag_name, ids)
        done = len(ids) < BULK_CHUNK
        # The checkpoint commits with the chunk, or (lease lost) neither does.
        _while_leased(
            action,
            cursor=ids[-1] if ids else action.cursor,
            processed=action.processed + len(ids),
            state=BulkAction.State.DONE if done else BulkAction.State.RUNNING,
            finished_at=timezone.now() if done else None,
            # Release: the next chunk goes to whichever worker claims it first.
            lease_until=None if done else timezone.now(),
        )


def delete_segment(segment: Segment) -> None:
    """Delete the segment, unless an automation starts when contacts enter it: ContactError
    naming them (campaigns keep their audience without it)."""
    from postroom.automations.models import Automation

    users = list(Automation.objects.filter(trigger_segment=segment).values_list("name", flat=True))
    if users:
        named = ", ".join(f"“{n}”" for n in sorted(users)[:5])
        raise ContactError(
            "segment", f"the automations {named} start from this segment: change them first."
        )
    segment.delete()
