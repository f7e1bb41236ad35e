"""Templates API (secret key).

GET    /api/v1/templates                  keyset pages: ?limit=1..100&cursor=
POST   /api/v1/templates                  create
GET    /api/v1/templates/{id}             one template
PATCH  /api/v1/templates/{id}             change some fields
DELETE /api/v1/templates/{id}             delete (409 while campaigns use it as their layout)
POST   /api/v1/templates/{id}/preview     {"subject", "html", "text"} for a contact or a sample

A template is checked as the dashboard checks it (content.forms.TemplateForm): a syntax error,
or a reach outside the sandbox, is a 422 naming the field, the line and the column.
"""

from __future__ import annotations

import dataclasses

from django import forms
from django.db.models import ProtectedError
from django.forms.models import model_to_dict
from django.http import Http404, HttpRequest
from django.utils import timezone
from ninja import Field, Query, Router
from ninja import Status as Reply
from ninja.errors import ValidationError

from postroom.accounts.auth import secret_key_auth
from postroom.contacts.models import Contact
from postroom.content import actions
from postroom.content.forms import TemplateForm, source_of
from postroom.content.models import Template
from postroom.content.render import Rendered
from postroom.content.sandbox import TemplateProblem
from postroom.content.schemas import (
    DeletedOut,
    PreviewIn,
    PreviewOut,
    TemplateIn,
    TemplateOut,
    TemplatePage,
    TemplatePatch,
)
from postroom.lib.apierrors import ApiError
from postroom.lib.apiinput import InputSchema
from postroom.lib.keyset import keyset_page
from postroom.lib.scoping import get_in_project_or_404

templates_router = Router(tags=["templates"], auth=secret_key_auth)


def _get_template(request: HttpRequest, template_id: str) -> Template:
    return get_in_project_or_404(Template, request.auth, template_id, "template")


def template_out(template: Template) -> dict:
    return {
        "id": str(template.code),
        "name": template.name,
        "format": template.format,
        "source": template.source,
        "text": template.text,
        "is_layout": template.is_layout,
        "created_at": template.created_at,
        "updated_at": template.updated_at,
    }


def _invalid(form: forms.Form) -> ValidationError:
    """The dashboard form's errors as the API's 422, every field at fault named."""
    return ValidationError(
        [{"loc": ("body", field), "msg": " ".join(msgs)} for field, msgs in form.errors.items()]
    )


def _save(template: Template, changes: dict) -> Template:
    """`template` with `changes`, checked by the dashboard's form, saved."""
    data = {**model_to_dict(template, fields=TemplateForm.Meta.fields), **changes}
    form = TemplateForm(data, instance=template, project=template.project)
    if not form.is_valid():
        raise _invalid(form)
    template = form.save(commit=False)
    template.updated_at = timezone.now()
    template.save()
    return template


class TemplateQuery(InputSchema):
    limit: int = Field(50, ge=1, le=100)
    cursor: str | None = None


@templates_router.get("", response=TemplatePage)
def list_templates(request: HttpRequest, query: Query[TemplateQuery]) -> dict:
    qs = Template.objects.filter(project=request.auth)
    page = keyset_page(qs, after=query.cursor, size=query.limit)
    return {"items": [template_out(t) for t in page.items], "next_cursor": page.next_cursor}


@templates_router.post("", response={201: TemplateOut})
def create_template(request: HttpRequest, body: TemplateIn) -> Reply:
    template = _save(Template(project=request.auth), body.dict())
    return Reply(201, template_out(template))


@templates_router.get("/{template_id}", response=TemplateOut)
def get_template(request: HttpRequest, template_id: str) -> dict:
    return template_out(_get_template(request, template_id))


@templates_router.patch("/{template_id}", response=TemplateOut)
def update_template(request: HttpRequest, template_id: str, body: TemplatePatch) -> dict:
    template = _get_template(request, template_id)
    return template_out(_save(template, body.dict(exclude_unset=True)))


@templates_router.delete("/{template_id}", response=DeletedOut)
def delete_template(request: HttpRequest, template_id: str) -> dict:
    template = _get_template(request, template_id)
    code = str(template.code)
    try:
        template.delete()
    except ProtectedError as e:
        names = sorted(c.name for c in e.protected_objects)
        shown = ", ".join(f"“{n}”" for n in names[:5]) + (", …" if len(names) > 5 else "")
        raise ApiError(
            409,
            f"“{template.name}” is the layout of {len(names)} campaign"
            f"{'s' if len(names) != 1 else ''} ({shown}): give them another layout first.",
        ) from None
    return {"success": True, "id": code}


@templates_router.post("/{template_id}/preview", response=PreviewOut)
def preview_template(request: HttpRequest, template_id: str, body: PreviewIn) -> Rendered:
    template = _get_template(request, template_id)
    contact = None
    if body.contact_id is not None:
        try:
            contact = get_in_project_or_404(Contact, request.auth, body.contact_id, "contact")
        except Http404:
            raise ApiError(422, "no such contact in this project.", "contact_id") from None
    fields = model_to_dict(template, fields=TemplateForm.Meta.fields)
    source = dataclasses.replace(source_of(fields), subject=body.subject)
    try:
        return actions.preview(request.auth, source, contact, body.data)
    except TemplateProblem as e:
        # The part as written ("Subject", "Text"), else the source or what was made from it.
        field = {"Subject": "subject", "Text": "text"}.get(e.part, "source")
        raise ApiError(422, str(e), field) from None
