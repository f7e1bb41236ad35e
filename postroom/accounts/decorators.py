"""Resolve the project in a dashboard URL, for members only: anyone else gets a 404."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse

from postroom.accounts.models import Membership


def project_view(view: Callable | None = None, *, manage: bool = False) -> Callable:
    """Sets request.project and request.membership from the URL's `project_code`.

    A project the user is not a member of is a 404 (we do not even confirm it exists).
    With manage=True, members who are not owner or admin get a 403.
    """

    def decorator(view: Callable) -> Callable:
        @login_required
        @wraps(view)
        def wrapper(request: HttpRequest, project_code, *args, **kwargs) -> HttpResponse:
            membership = (
                Membership.objects.select_related("project")
                .filter(user=request.user, project__code=project_code)
                .first()
            )
            if membership is None:
                raise Http404("No such project.")
            if manage and not membership.can_manage():
                raise PermissionDenied("Only owners and admins can do this.")
            request.project = membership.project
            request.membership = membership
            return view(request, *args, **kwargs)

        return wrapper

    return decorator(view) if view is not None else decorator
