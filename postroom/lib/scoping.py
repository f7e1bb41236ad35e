"""Look objects up by public id inside one project, the only way API handlers should."""

from __future__ import annotations

import uuid
from typing import TypeVar

from django.db.models import Model
from django.http import Http404

M = TypeVar("M", bound=Model)


def find_in_project(model: type[M], project: Model, code: object) -> M | None:
    """The `model` row with public id `code` in `project`; None for a malformed id, an
    unknown one, or one of another project."""
    try:
        public_id = uuid.UUID(str(code))
    except ValueError:
        return None
    return model.objects.filter(project=project, code=public_id).first()


def get_in_project_or_404(model: type[M], project: Model, code: object, what: str) -> M:
    """find_in_project, or a 404 (we never confirm an object exists in another project)."""
    found = find_in_project(model, project, code)
    if found is None:
        raise Http404(f"No such {what}.")
    return found
