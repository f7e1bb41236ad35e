"""Look objects up by public id inside one project, the only way API handlers should."""

from __future__ import annotations

import uuid
from typing import TypeVar

from django.db.models import Model
from django.http import Http404

M = TypeVar("M", bound=Model)


def get_in_project_or_404(model: type[M], project: Model, code: object, what: str) -> M:
    """The `model` row with public id `code` in `project`; a 404 for a malformed id, an
    unknown one, or one of another project (we never confirm it exists elsewhere)."""
    try:
        public_id = uuid.UUID(str(code))
    except ValueError:
        raise Http404(f"No such {what}.") from None
    found = model.objects.filter(project=project, code=public_id).first()
    if found is None:
        raise Http404(f"No such {what}.")
    return found
