"""Checking what an author wrote before it is saved or sent; the images they upload."""

from __future__ import annotations

from django.conf import settings
from jinja2 import UndefinedError

from postroom.accounts.models import Project
from postroom.contacts.models import Contact
from postroom.content.context import preview_context
from postroom.content.models import Image
from postroom.content.render import CompiledEmail, Prepared, Rendered, Source, compile_email
from postroom.content.sandbox import RENDER_ERRORS, Deadline, TemplateProblem, render
from postroom.lib.emails import one_line


def check_content(
    project: Project, source: Source, prepared: Prepared | None = None
) -> CompiledEmail:
    """Compile, then render once for a sample reader: syntax errors name the part, line and
    column; a template that reaches for what it may not, or runs too long, is refused now
    rather than at send time. Errors that depend on a recipient's data are left to the send,
    where they fail that recipient alone."""
    compiled = compile_email(source, prepared)
    context = compiled.with_links(preview_context(project, None))
    # Each part once, named, so that a problem in the subject is said to be there.
    for part, template in (
        ("Subject", compiled.subject),
        ("", compiled.html),
        ("", compiled.text),
    ):
        try:
            render(template, context)
        except UndefinedError:  # data a sample reader lacks: judged per recipient
            pass
        except Deadline:
            raise TemplateProblem("the template took too long to render").within(part) from None
        except RENDER_ERRORS as e:
            raise TemplateProblem(f"with a sample reader: {e}").within(part) from None
    return compiled


def preview(
    project: Project, source: Source, contact: Contact | None, data: dict | None = None
) -> Rendered:
    """What `contact` (or a sample reader) would get, with `data` as an event or an API send
    would give it. Raises TemplateProblem."""
    compiled = compile_email(source)
    try:
        return compiled.render(preview_context(project, contact, data))
    except TemplateProblem:
        raise
    except Deadline:
        raise TemplateProblem("the template took too long to render") from None
    except RENDER_ERRORS as e:
        raise TemplateProblem(f"for this contact: {e}") from None


# What an upload's first bytes say it is: only raster images (an SVG can carry scripts).
IMAGE_TYPES = {
    b"\x89PNG\r\n\x1a\n": "png",
    b"\xff\xd8\xff": "jpg",
    b"GIF87a": "gif",
    b"GIF89a": "gif",
}
CONTENT_TYPES = {"png": "image/png", "jpg": "image/jpeg", "gif": "image/gif", "webp": "image/webp"}


class UploadError(ValueError):
    pass


def image_kind(head: bytes) -> str | None:
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return next((kind for magic, kind in IMAGE_TYPES.items() if head.startswith(magic)), None)


def save_image(project: Project, upload) -> Image:
    """Keep an uploaded image. Raises UploadError saying what is wrong with it."""
    if upload.size > settings.UPLOAD_MAX_BYTES:
        limit = settings.UPLOAD_MAX_BYTES // (1024 * 1024)
        raise UploadError(f"{upload.name} is over {limit} MB.")
    head = upload.read(16)
    kind = image_kind(head)
    if kind is None:
        raise UploadError(f"{upload.name} is not a PNG, JPEG, GIF or WebP image.")
    upload.seek(0)
    image = Image(
        project=project, name=one_line(upload.name)[:200], extension=kind, size=upload.size
    )
    settings.UPLOADS_DIR.mkdir(parents=True, exist_ok=True)
    path = settings.UPLOADS_DIR / image.filename
    try:
        with open(path, "wb") as out:
            for chunk in upload.chunks():
                out.write(chunk)
        image.save()
    except BaseException:
        path.unlink(missing_ok=True)  # no file without its row
        raise
    return image


def delete_image(image: Image) -> None:
    (settings.UPLOADS_DIR / image.filename).unlink(missing_ok=True)
    image.delete()
