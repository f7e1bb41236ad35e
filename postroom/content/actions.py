"""Checking what an author wrote before it is saved or sent."""

from __future__ import annotations

from jinja2.sandbox import SecurityError

from postroom.accounts.models import Project
from postroom.contacts.models import Contact
from postroom.content.context import preview_context
from postroom.content.render import CompiledEmail, Rendered, Source, compile_email
from postroom.content.sandbox import RenderTimeout, TemplateProblem


def check_content(project: Project, source: Source) -> CompiledEmail:
    """Compile, then render once for a sample reader: syntax errors name the part, line and
    column; a template that reaches for what it may not, or runs too long, is refused now
    rather than at send time. Errors that depend on a recipient's data are left to the send,
    where they fail that recipient alone."""
    compiled = compile_email(source)
    try:
        compiled.render(preview_context(project, None))
    except (SecurityError, RenderTimeout) as e:
        raise TemplateProblem(str(e)) from None
    except Exception:  # noqa: S110 (depends on a recipient's data: judged per recipient)
        pass
    return compiled


def preview(project: Project, source: Source, contact: Contact | None) -> Rendered:
    """What `contact` (or a sample reader) would get. Raises TemplateProblem."""
    compiled = compile_email(source)
    try:
        return compiled.render(preview_context(project, contact))
    except TemplateProblem:
        raise
    except Exception as e:
        raise TemplateProblem(f"for this contact: {e}") from None
