"""The REST API against its own OpenAPI document, with Schemathesis.

Every operation is called with generated data, valid and invalid, and alice's secret key, in a
project that holds one of each object. Hooks mix good values into what Schemathesis generates
(real ids, addresses, states) so that requests get past validation to the code behind it; the
first request of an operation that succeeds is sent again with NUL or a lone surrogate in each
of its fields in turn. It fails on a server error, on a response that breaks its documented
schema or content type, and on an error that is not the API's error shape (lib.apierrors).
The run is derandomized: the same code makes the same requests, so it cannot flake.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from postroom.accounts.actions import create_project
from postroom.accounts.models import User
from postroom.campaigns import actions as campaign_actions
from postroom.campaigns.models import Campaign
from postroom.contacts.actions import create_contact
from postroom.contacts.models import Segment
from postroom.content.models import Template
from postroom.delivery.actions import Recipient, Transactional, default_sender, send_transactional
from postroom.imports import actions as import_actions
from postroom.lib.apierrors import CODES
from postroom.test import drain
from postroom.tracking.actions import track
from postroom.wsgi import application

# Every call carries alice's key: calls without one are test_api_auth's, and here would spend
# the examples on 401s. Reproductions are shown as sent: the key is a throwaway test key, and
# Schemathesis would otherwise also mask any field named like a secret ("key" in POST /fields).
CONFIG = schemathesis.Config.from_dict(
    {
        "generation": {"with-security-parameters": False},
        "output": {"sanitization": {"enabled": False}},
    }
)
schema = schemathesis.openapi.from_wsgi("/api/openapi.json", application, config=CONFIG)

# Values that get past validation, by the name of a parameter or body field: the document says
# "string" where the API wants an address, a state or a format. The `secret_key` fixture adds
# the public ids of its objects (SAMPLES["campaign_id"] = [two campaigns' ids], ...).
GOOD_VALUES: dict[str, list[Any]] = {
    "limit": [1, 50],
    "email": ["ann@example.com", "new@example.com"],
    "to": [
        "ann@example.com",
        ["ann@example.com"],
        ["ann@example.com", {"email": "new@example.com", "name": "New"}],
    ],
    "reply": ["reply@example.com"],
    "reply_to": ["reply@example.com"],
    "status": ["subscribed", "unsubscribed"],
    "audience": ["all", "segment", "tags"],
    "format": ["markdown", "html", "mjml", "text"],
    "body_format": ["markdown", "html", "mjml", "text"],
    "time_zone": ["UTC", "Europe/Paris"],
    "at": ["2039-01-02T09:00:00+01:00"],
    "event": ["signed-up"],
    "subject": ["Hi {{ first_name }}"],
    "body": ["<p>Hello {{ first_name }}, {{ data.plan }}</p>", "Hello **{{ first_name }}**"],
    "source": ["<p>Hi {{ first_name }}</p>", "<div>{{ content }}</div>"],
    "headers": [{}, {"X-Campaign": "spring"}],
    "attachments": [[], [{"filename": "a.txt", "content": "aGVsbG8="}]],
    "data": [{"plan": "pro"}, {"plan": {"value": "trial", "persistent": False}}],
    "rules": [{"match": "any", "rules": [{"kind": "tag", "op": "has", "value": "vip"}]}],
    # POST /imports: a file with a column of addresses, to get past "map a column to email".
    "file": [b"email,first_name\nann@example.com,Ann\nnew@example.com,New\n"],
    "mode": ["create", "upsert"],
}
SAMPLES: dict[str, list[Any]] = {}


def _mostly_good(values: Any, declared: set[str]) -> st.SearchStrategy:
    """`values` as generated or, twice as often, with every field that has good values (of
    those generated and those `declared`) set to one of them but one, which keeps its generated
    value: the code behind validation then meets that field's odd values."""
    if not isinstance(values, dict):
        return st.just(values)
    names = [*values, *sorted(declared & SAMPLES.keys() - values.keys())]
    if not SAMPLES.keys() & set(names):
        return st.just(values)

    def all_good_but(kept: str | None) -> st.SearchStrategy:
        good = {n: st.sampled_from(SAMPLES[n]) for n in names if n in SAMPLES and n != kept}
        return st.fixed_dictionaries({**{n: st.just(v) for n, v in values.items()}, **good})

    ours = [name for name in names if name in declared or name in SAMPLES]
    all_good_but_one = st.sampled_from([None, *ours]).flatmap(all_good_but)
    return st.one_of(all_good_but_one, all_good_but_one, st.just(values))


def documented(operation: schemathesis.APIOperation, location: str) -> set[str]:
    """The names of an operation's query parameters, or of its JSON body's properties, as
    django-ninja documents them."""
    raw = schema.raw_schema["paths"][operation.path][operation.method.lower()]
    if location == "query":
        return {p["name"] for p in raw.get("parameters", []) if p["in"] == "query"}
    content = raw.get("requestBody", {}).get("content", {})
    ref = content.get("application/json", {}).get("schema", {}).get("$ref", "")
    found = schema.raw_schema["components"]["schemas"].get(ref.rpartition("/")[2], {})
    return set(found.get("properties", {}))


# OpenAPI matches a concrete path before a templated one: /contacts/count is not
# /contacts/{contact_id} with contact_id="count", so such a case tests nothing.
CONCRETE_PATHS = {path for path in schema.raw_schema["paths"] if "{" not in path}


@schema.hook
def filter_path_parameters(context, path_parameters: dict | None) -> bool:
    if not isinstance(path_parameters, dict):
        return True
    return context.operation.path.format(**path_parameters) not in CONCRETE_PATHS


@schema.hook
def flatmap_path_parameters(context, path_parameters: dict | None) -> st.SearchStrategy:
    return _mostly_good(path_parameters, set(path_parameters or ()))


@schema.hook
def flatmap_query(context, query: dict | None) -> st.SearchStrategy:
    return _mostly_good(query, set(query or ()))


@schema.hook
def flatmap_body(context, body: Any) -> st.SearchStrategy:
    return _mostly_good(body, documented(context.operation, "body"))


# Characters that pass a type check and break what lies behind it: PostgreSQL's text and jsonb
# refuse NUL, and UTF-8 has no lone surrogate, which JSON can still send ("\ud800"); a query
# string cannot carry one.
ODD_CHARACTERS = {"query": ["\x00"], "body": ["\x00", "\ud800"]}


def _spoiled(value: Any, char: str) -> Any:
    """`value` with `char` in it; None for a value that holds no text."""
    if isinstance(value, str):
        return value + char
    if isinstance(value, list):
        return [*value, char]
    if isinstance(value, dict):
        return {**value, "odd": char}
    return None


def with_odd_characters(case: schemathesis.Case) -> list[schemathesis.Case]:
    """`case` again, once per documented query parameter and body field and odd character,
    with that character in that field (alone, if the field was left out)."""
    odd = []
    for location in ("query", "body"):
        fields = getattr(case, location)
        if not isinstance(fields, dict):
            continue
        for name in sorted(documented(case.operation, location)):
            for char in ODD_CHARACTERS[location]:
                spoiled = _spoiled(fields.get(name, ""), char)
                if spoiled is not None:
                    derived = case.derive()
                    getattr(derived, location)[name] = spoiled
                    odd.append(derived)
    return odd


def error_shape(ctx, response, case) -> bool | None:
    """An error is JSON {success: false, code, message, errors: [{field, message}]}, with a
    status the API gives on purpose."""
    if not 400 <= response.status_code < 500:
        return None  # a 5xx is not_a_server_error's
    assert response.status_code in CODES, f"Unexpected status {response.status_code}"
    content_type = response.headers.get("content-type", [""])[0]
    assert content_type.startswith("application/json"), f"Error as {content_type!r}"
    body = json.loads(response.content)
    assert body["success"] is False, body
    assert body["code"] == CODES[response.status_code], body
    assert isinstance(body["message"], str) and body["message"], body
    assert isinstance(body["errors"], list), body
    for error in body["errors"]:
        assert set(error) == {"field", "message"}, body
        assert all(isinstance(v, str) for v in error.values()), body
    return True


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    response_schema_conformance,
    content_type_conformance,
    error_shape,
]


@pytest.fixture
def secret_key(db, settings, tmp_path) -> Iterator[str]:
    """A project with one of each object, as the hooks name them; its secret key."""
    settings.API_RATE_LIMIT = 0  # thousands of calls in a few seconds are the point here
    settings.IMPORTS_DIR = tmp_path / "imports"  # uploads stay out of the data folder
    alice = User.objects.create_user("alice@example.org", "x", name="Alice")
    project, key = create_project("Alice's project", alice)
    sender = default_sender(project)
    contact = create_contact(project, "ann@example.com", first_name="Ann", tags=["vip"])
    create_contact(project, "bob@example.com", data={"plan": "pro"}, create_fields=True)
    segment = Segment.objects.create(
        project=project,
        name="VIPs",
        rules={"match": "all", "rules": [{"kind": "tag", "op": "has", "value": "vip"}]},
    )
    template = Template.objects.create(
        project=project, name="Welcome", source="<p>Hi {{ first_name }}</p>"
    )
    layout = Template.objects.create(
        project=project, name="Layout", source="<div>{{ content }}</div>"
    )
    sent = Campaign.objects.create(
        project=project,
        sender=sender,
        from_email=sender.from_email,
        name="Sent",
        subject="News",
        body="Hello {{ first_name }}",
    )
    campaign_actions.start(sent)
    campaign_actions.start_due_campaigns()
    draft = Campaign.objects.create(
        project=project,
        sender=sender,
        from_email=sender.from_email,
        name="Draft",
        subject="Soon",
        body="More",
        audience="segment",
        segment=segment,
        layout=layout,
    )
    (message,) = send_transactional(
        project,
        Transactional(to=[Recipient("ann@example.com", "Ann")], subject="Hi", body="<p>Hi</p>"),
    )
    drain()
    track(project, "signed-up", "ann@example.com", None, {"plan": "pro"}, None)
    csv = b"email,name\nann@example.com,Ann\nnot-an-address,Nobody\n"
    imported = import_actions.create_import(project, io.BytesIO(csv), "contacts.csv")
    import_actions.start_import(imported)
    while import_actions.handle_one_import():
        pass
    draft_import = import_actions.create_import(project, io.BytesIO(csv), "contacts.csv")
    contacts, campaigns = [str(contact.code)], [str(sent.code), str(draft.code)]
    senders = [str(sender.code)]
    SAMPLES.update(
        GOOD_VALUES,
        contact_id=contacts,
        contact=contacts,  # GET /events?contact=
        segment_id=[str(segment.code)],
        campaign_id=campaigns,
        campaign=campaigns,
        template_id=[str(template.code), str(layout.code)],
        layout_id=[str(layout.code)],
        template=[None, str(layout.code)],  # POST /send: a body, and a layout for it or not
        message_id=[str(message.code)],
        sender_id=senders,
        import_id=[str(imported.code), str(draft_import.code)],
        sender=[None, *senders],
        state=["draft", "finished", "sent", "failed"],
        kind=["transactional", "campaign", "custom", "opened"],
        name=["signed-up"],
        from_email=[sender.from_email],
        **{"from": [sender.from_email]},
    )
    yield key
    SAMPLES.clear()


@pytest.fixture
def no_connection_closing() -> Iterator[None]:
    """Django's WSGI handler closes the database connection after each request, which would
    end the test's transaction: its test client leaves this out too (django.test.client)."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def succeeded() -> set[str]:
    """The operations that have answered 2xx once (and been sent odd characters)."""
    return set()


@schema.parametrize()
@settings(
    max_examples=20,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_the_api_keeps_its_documented_promises(
    case, secret_key, no_connection_closing, succeeded
) -> None:
    auth = {"Authorization": f"Bearer {secret_key}"}
    response = case.call_and_validate(headers=auth, checks=CHECKS)
    label = case.operation.label
    documented_method = case.method.upper() == case.operation.method.upper()
    if response.status_code < 300 and documented_method and label not in succeeded:
        for odd in with_odd_characters(case):
            odd.call_and_validate(headers=auth, checks=CHECKS)
        succeeded.add(label)
