"""Signup forms API (secret key): a project's forms and who signed up through them.

GET    /api/v1/signup-forms                  the forms, with their hosted URL and embed HTML
POST   /api/v1/signup-forms                  {name, fields?, required?, tags?, …} (201)
GET    /api/v1/signup-forms/{id}
PATCH  /api/v1/signup-forms/{id}             the settings sent change, the rest stay
DELETE /api/v1/signup-forms/{id}             the form and its signups
GET    /api/v1/signup-forms/{id}/signups     keyset pages: ?limit=&cursor=&state=

A signup's state is pending, confirmed or expired. Settings are checked as the dashboard
checks them (signups.forms.SignupFormForm): a bad one is a 422 naming it (`confirm_text`
without `{{ confirm_url }}`, an unknown field, a URL that is not http or https, …).
"""

from __future__ import annotations

from django.http import HttpRequest
from django.utils import timezone
from ninja import Query, Router
from ninja import Status as Reply

from postroom.accounts.auth import secret_key_auth
from postroom.lib.apierrors import ApiError
from postroom.lib.keyset import keyset_page
from postroom.lib.scoping import get_in_project_or_404
from postroom.signups.forms import SignupFormForm
from postroom.signups.models import Signup, SignupForm
from postroom.signups.schemas import (
    SignupFormDeleted,
    SignupFormIn,
    SignupFormOut,
    SignupPage,
    SignupQuery,
)
from postroom.signups.views import embed_snippet, hosted_url

signups_router = Router(tags=["signup forms"], auth=secret_key_auth)

SETTINGS = SignupFormForm.Meta.fields  # the settings the dashboard edits, by name
# The dashboard form's names for what the API calls fields, required and tags.
FORM_NAMES = {"asked": "fields", "required_fields": "required", "tags_text": "tags"}


def _get_form(request: HttpRequest, form_id: str) -> SignupForm:
    return get_in_project_or_404(SignupForm, request.auth, form_id, "signup form")


def form_out(signup_form: SignupForm) -> dict:
    return {
        "id": str(signup_form.code),
        **{name: getattr(signup_form, name) for name in SETTINGS},
        "fields": signup_form.fields,
        "required": signup_form.required,
        "tags": signup_form.tags,
        "hosted_url": hosted_url(signup_form),
        "embed_html": embed_snippet(signup_form),
        "created_at": signup_form.created_at,
        "updated_at": signup_form.updated_at,
    }


def save(request: HttpRequest, signup_form: SignupForm, body: SignupFormIn) -> SignupForm:
    """The form's settings as they are, with what the request sent, through the dashboard's
    checks."""
    sent = body.dict(exclude_unset=True)
    data = {name: getattr(signup_form, name) for name in SETTINGS}
    data |= {
        "asked": signup_form.fields,
        "required_fields": signup_form.required,
        "tags_text": ", ".join(signup_form.tags),
    }
    for name, value in sent.items():
        if value is None:
            continue
        if name in ("fields", "required"):
            data["asked" if name == "fields" else "required_fields"] = value
        elif name == "tags":
            data["tags_text"] = ", ".join(value)
        else:
            data[name] = value
    # An HTML form leaves an unticked box out.
    for flag in ("double_opt_in", "active"):
        if not data[flag]:
            data.pop(flag)
    form = SignupFormForm(data, instance=signup_form, project=request.auth)
    if not form.is_valid():
        field, errors = next(iter(form.errors.items()))
        raise ApiError(422, " ".join(errors), FORM_NAMES.get(field, field))
    return form.save()


@signups_router.get("", response=list[SignupFormOut])
def list_signup_forms(request: HttpRequest) -> list[dict]:
    forms = SignupForm.objects.filter(project=request.auth).order_by("id")
    return [form_out(f) for f in forms]


@signups_router.post("", response={201: SignupFormOut})
def create_signup_form(request: HttpRequest, body: SignupFormIn) -> Reply:
    if not (body.name or "").strip():
        raise ApiError(422, "give the form a name.", "name")
    return Reply(201, form_out(save(request, SignupForm(project=request.auth), body)))


@signups_router.get("/{form_id}", response=SignupFormOut)
def get_signup_form(request: HttpRequest, form_id: str) -> dict:
    return form_out(_get_form(request, form_id))


@signups_router.patch("/{form_id}", response=SignupFormOut)
def update_signup_form(request: HttpRequest, form_id: str, body: SignupFormIn) -> dict:
    return form_out(save(request, _get_form(request, form_id), body))


@signups_router.delete("/{form_id}", response=SignupFormDeleted)
def delete_signup_form(request: HttpRequest, form_id: str) -> dict:
    signup_form = _get_form(request, form_id)
    code = str(signup_form.code)
    signup_form.delete()
    return {"success": True, "id": code}


@signups_router.get("/{form_id}/signups", response=SignupPage)
def list_signups(request: HttpRequest, form_id: str, query: Query[SignupQuery]) -> dict:
    signups = Signup.objects.filter(form=_get_form(request, form_id)).select_related("contact")
    expired_before = timezone.now() - Signup.CONFIRM_WITHIN
    if query.state == Signup.State.CONFIRMED:
        signups = signups.exclude(confirmed_at=None)
    elif query.state == Signup.State.EXPIRED:
        signups = signups.filter(confirmed_at=None, created_at__lt=expired_before)
    elif query.state == Signup.State.PENDING:
        signups = signups.filter(confirmed_at=None, created_at__gte=expired_before)
    elif query.state:
        raise ApiError(422, f"must be one of {Signup.State.values}.", "state")
    page = keyset_page(signups, after=query.cursor, size=query.limit)
    return {
        "items": [
            {
                "id": str(s.code),
                "email": s.email,
                "state": s.state,
                "submitted": s.submitted,
                "ip": s.ip,
                "referrer": s.referrer,
                "created_at": s.created_at,
                "confirmed_at": s.confirmed_at,
                "contact": str(s.contact.code) if s.contact else None,
            }
            for s in page.items
        ],
        "next_cursor": page.next_cursor,
    }
