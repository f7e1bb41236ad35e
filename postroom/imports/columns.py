"""Where each column of an import goes: the targets, and the automatic mapping of headers.

A mapping is a list with one entry per column of the file, stored on the Import as JSON:
{"target": "email" | "first_name" | "last_name" | "name" | "status" | "tags" | "consent_at"
| "field" | "ignore", "field": custom field key (target "field"), "type": the type of a field
the import creates}.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from postroom.contacts.actions import FIELD_KEY, MAX_FIELDS
from postroom.contacts.models import FieldDefinition, FieldType

TARGETS = {
    "email": "Email",
    "first_name": "First name",
    "last_name": "Last name",
    "name": "Full name (split into first and last)",
    "status": "Status",
    "tags": "Tags",
    "consent_at": "Consent date",
    "field": "Custom field",
    "ignore": "Ignore",
}
# Targets a file may map at most one column to.
SINGLE_TARGETS = ("email", "first_name", "last_name", "name", "status", "consent_at")

# Header spellings seen in exports of other tools and in several languages, folded by
# header_key (lower case, no accents, letters and digits only).
HEADER_ALIASES = {
    "email": [
        "email",
        "e-mail",
        "emailaddress",
        "e-mail address",
        "mail",
        "mailaddress",
        "correo",
        "correo electronico",
        "correoelectronico",
        "email adresse",
        "e-mail-adresse",
        "mailadresse",
        "courriel",
        "adresse email",
        "adresse e-mail",
        "adresse mail",
        "posta elettronica",
        "indirizzo email",
        "e-post",
        "epost",
        "e-postadresse",
        "emailadres",
        "e-mailadres",
        "endereco de email",
        "subscriber email",
        "email_address",
        "contact email",
        "user email",
    ],
    "first_name": [
        "first name",
        "firstname",
        "first",
        "given name",
        "givenname",
        "forename",
        "vorname",
        "prenom",
        "nombre",
        "nome",
        "primeiro nome",
        "voornaam",
        "fname",
        "first_name",
    ],
    "last_name": [
        "last name",
        "lastname",
        "last",
        "surname",
        "family name",
        "familyname",
        "nachname",
        "nom",
        "nom de famille",
        "apellido",
        "apellidos",
        "cognome",
        "sobrenome",
        "achternaam",
        "lname",
        "last_name",
    ],
    "name": ["name", "full name", "fullname", "display name", "nombre completo", "nom complet"],
    "status": [
        "status",
        "subscribed",
        "subscription",
        "subscription status",
        "estado",
        "statut",
        "stato",
        "abonniert",
    ],
    "tags": ["tags", "tag", "labels", "label", "etiquetas", "etiquettes", "schlagworte", "groups"],
    "consent_at": [
        "consent date",
        "consent",
        "consent_at",
        "consented at",
        "opt-in date",
        "optin date",
        "opt in date",
        "subscribed at",
        "signup date",
        "sign-up date",
        "date subscribed",
        "einwilligung",
        "einwilligungsdatum",
        "fecha de consentimiento",
        "date de consentement",
    ],
}


# Columns other tools (and our own export) write that an import must not turn into fields.
IGNORED_HEADERS = {"consentsource", "createdat", "updatedat", "id", "code", "contactid"}


def header_key(header: str) -> str:
    """'E-Mail Address' -> 'emailaddress', 'Prénom' -> 'prenom'."""
    folded = unicodedata.normalize("NFKD", header.strip().lower())
    return "".join(c for c in folded if c.isalnum())


ALIAS_TARGET = {
    header_key(alias): target for target, aliases in HEADER_ALIASES.items() for alias in aliases
}


def is_known_header(cell: str) -> bool:
    return header_key(cell) in ALIAS_TARGET


def new_field_key(header: str) -> str:
    """A custom field key from a header: 'Favourite Colour' -> 'favourite_colour'."""
    folded = unicodedata.normalize("NFKD", header.strip().lower())
    ascii_only = folded.encode("ascii", "ignore").decode()
    key = re.sub(r"[^a-z0-9]+", "_", ascii_only).strip("_")[:64]
    if key and not key[0].isalpha():
        key = f"f_{key}"[:64]
    return key


def auto_mapping(
    headers: list[str], fields: dict[str, FieldDefinition], sample: list[list[str]]
) -> list[dict[str, Any]]:
    """One entry per column, guessed from the header (or, without one, from the values): known
    spellings, then the project's custom fields by key or label; unknown headers become new
    text fields, headerless columns are ignored except the one holding addresses."""
    by_label = {header_key(f.label): f.key for f in fields.values() if f.label}
    by_key = {header_key(key): key for key in fields}
    width = len(headers) or max((len(row) for row in sample), default=0)
    mapping: list[dict[str, Any]] = []
    used: set[str] = set()
    for index in range(width):
        header = headers[index] if index < len(headers) else ""
        key = header_key(header)
        target = ALIAS_TARGET.get(key)
        if target in used and target in SINGLE_TARGETS:
            target = None
        if key in IGNORED_HEADERS:
            entry = {"target": "ignore"}
        elif target:
            entry = {"target": target}
        elif key in by_key or key in by_label:
            entry = {"target": "field", "field": by_key.get(key) or by_label[key]}
        elif header.strip() and new_field_key(header) and FIELD_KEY.match(new_field_key(header)):
            entry = {"target": "field", "field": new_field_key(header), "type": FieldType.TEXT}
        else:
            entry = {"target": "ignore"}
        used.add(entry["target"])
        mapping.append(entry)
    if "email" not in used:
        column = email_column(sample)
        if column is not None and column < len(mapping):
            mapping[column] = {"target": "email"}
    return mapping


def email_column(sample: list[list[str]]) -> int | None:
    """The column where most sample rows hold something shaped like an address."""
    from postroom.lib.csvsniff import looks_like_email

    counts: dict[int, int] = {}
    for row in sample:
        for index, cell in enumerate(row):
            if looks_like_email(cell):
                counts[index] = counts.get(index, 0) + 1
    return max(counts, key=counts.get) if counts else None


class MappingError(ValueError):
    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


def clean_mapping(raw: Any, width: int, fields: dict[str, FieldDefinition]) -> list[dict[str, Any]]:
    """A mapping as given by a form, the API or the CLI, checked: one entry per column, one
    email column, known targets, fields that exist or can be made. Raises MappingError."""
    if not isinstance(raw, list):
        raise MappingError("mapping", "a list with one entry per column.")
    if len(raw) > width:
        raise MappingError("mapping", f"{len(raw)} entries for a file of {width} columns.")
    mapping: list[dict[str, Any]] = []
    new_fields = 0
    for index, entry in enumerate([*raw, *[{"target": "ignore"}] * (width - len(raw))]):
        where = f"mapping[{index}]"
        if isinstance(entry, str):
            entry = {"target": entry}
        if not isinstance(entry, dict) or entry.get("target") not in TARGETS:
            raise MappingError(where, f"target must be one of {', '.join(TARGETS)}.")
        target = entry["target"]
        if target != "field":
            mapping.append({"target": target})
            continue
        key = str(entry.get("field") or "").strip().lower()
        if key in fields:
            mapping.append({"target": "field", "field": key})
            continue
        if not FIELD_KEY.match(key) or len(key) > 64:
            raise MappingError(
                where, f"field {key!r}: lower-case letters, digits and _, starting with a letter."
            )
        field_type = entry.get("type") or FieldType.TEXT
        if field_type not in FieldType.values:
            raise MappingError(where, f"type must be one of {', '.join(FieldType.values)}.")
        new_fields += 1
        mapping.append({"target": "field", "field": key, "type": field_type})
    targets = [e["target"] for e in mapping]
    if targets.count("email") != 1:
        raise MappingError("mapping", "map exactly one column to email.")
    for target in SINGLE_TARGETS:
        if targets.count(target) > 1:
            raise MappingError("mapping", f"more than one column is mapped to {target}.")
    keys = [e["field"] for e in mapping if e["target"] == "field"]
    if len(keys) != len(set(keys)):
        raise MappingError("mapping", "two columns are mapped to the same custom field.")
    if len(fields) + new_fields > MAX_FIELDS:
        raise MappingError("mapping", f"a project has at most {MAX_FIELDS} custom fields.")
    return mapping
