from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import ProtectedError
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from postroom.accounts.decorators import project_view
from postroom.contacts.models import Contact
from postroom.content.actions import CONTENT_TYPES, UploadError, delete_image, preview, save_image
from postroom.content.forms import TemplateForm, source_of
from postroom.content.models import Image, Template
from postroom.content.sandbox import TemplateProblem
from postroom.lib.emails import InvalidEmail, normalise_email
from postroom.lib.keyset import keyset_page


def _get_template(request: HttpRequest, code) -> Template:
    return get_object_or_404(Template, project=request.project, code=code)


@project_view
def template_list(request: HttpRequest) -> HttpResponse:
    qs = Template.objects.filter(project=request.project)
    page = keyset_page(qs, after=request.GET.get("after"), before=request.GET.get("before"))
    images = Image.objects.filter(project=request.project).order_by("-id")[:50]
    return render(request, "content/list.html", {"page": page, "images": images})


@require_POST
@project_view(manage=True)
def image_upload(request: HttpRequest) -> HttpResponse:
    uploads = request.FILES.getlist("image")
    if not uploads:
        messages.error(request, "Choose an image to upload.")
    for upload in uploads:
        try:
            image = save_image(request.project, upload)
        except UploadError as e:
            messages.error(request, str(e))
        else:
            messages.success(request, f"Uploaded {image.name}: {image.url}")
    return redirect(reverse("templates", kwargs={"project_code": request.project.code}) + "#images")


@require_POST
@project_view(manage=True)
def image_delete(request: HttpRequest, code) -> HttpResponse:
    image = get_object_or_404(Image, project=request.project, code=code)
    delete_image(image)
    messages.success(request, f"Deleted {image.name}. Mail already sent shows it no more.")
    return redirect(reverse("templates", kwargs={"project_code": request.project.code}) + "#images")


def image_file(request: HttpRequest, name: str) -> HttpResponse:
    """An uploaded image, for anyone with its URL (mail clients); cached for a year, since
    its URL never serves other bytes."""
    code, _, extension = name.partition(".")
    try:
        image = Image.objects.get(code=code, extension=extension)
    except (Image.DoesNotExist, ValueError, ValidationError):
        raise Http404("No such image.") from None
    path = settings.UPLOADS_DIR / image.filename
    if not path.exists():
        raise Http404("No such image.")
    response = FileResponse(open(path, "rb"), content_type=CONTENT_TYPES[image.extension])  # noqa: SIM115
    response["Cache-Control"] = "public, max-age=31536000, immutable"
    response["X-Content-Type-Options"] = "nosniff"
    return response


@project_view(manage=True)
def template_edit(request: HttpRequest, code=None) -> HttpResponse:
    template = _get_template(request, code) if code else Template(project=request.project)
    form = TemplateForm(request.POST or None, instance=template, project=request.project)
    if request.method == "POST" and form.is_valid():
        template = form.save(commit=False)
        template.updated_at = timezone.now()
        template.save()
        messages.success(request, f"Template “{template.name}” saved.")
        return redirect("template_edit", project_code=request.project.code, code=template.code)
    context = {"form": form, "template": template if code else None}
    return render(request, "content/edit.html", context)


@require_POST
@project_view(manage=True)
def template_preview(request: HttpRequest) -> HttpResponse:
    """The live preview: what the form holds now, for a contact chosen by address or a
    sample reader. An HTML fragment for htmx; a template error is shown, not raised."""
    fields = {k: request.POST.get(k, "") for k in ("source", "format", "text")}
    return render_preview(request, source_of(fields))


def preview_contact(request: HttpRequest) -> tuple[Contact | None, str]:
    """The contact named in the request's `preview_email`, or None (a sample reader) and
    why not."""
    raw = request.POST.get("preview_email", "").strip()
    if not raw:
        return None, ""
    try:
        address = normalise_email(raw)
    except InvalidEmail:
        return None, f"{raw!r} is not an email address: showing a sample reader."
    contact = Contact.objects.filter(project=request.project, email=address).first()
    if contact is None:
        return None, f"No contact {address}: showing a sample reader."
    return contact, ""


def render_preview(request: HttpRequest, source) -> HttpResponse:
    contact, note = preview_contact(request)
    context = {"contact": contact, "note": note}
    try:
        context["rendered"] = preview(request.project, source, contact)
    except TemplateProblem as e:
        context["problem"] = str(e)
    return render(request, "content/_preview.html", context)


@require_POST
@project_view(manage=True)
def template_delete(request: HttpRequest, code) -> HttpResponse:
    template = _get_template(request, code)
    try:
        template.delete()
    except ProtectedError:
        messages.error(request, f"“{template.name}” is the layout of campaigns: keep it.")
        return redirect("template_edit", project_code=request.project.code, code=template.code)
    messages.success(request, f"Template “{template.name}” deleted.")
    return redirect("templates", project_code=request.project.code)
