from __future__ import annotations

from django.http import HttpRequest


def projects(request: HttpRequest) -> dict:
    """The project switcher's list, and the current project when a view has resolved one."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    return {
        "my_projects": lambda: list(
            user.memberships.select_related("project").order_by("project__name")
        ),
        "project": getattr(request, "project", None),
        "membership": getattr(request, "membership", None),
    }
