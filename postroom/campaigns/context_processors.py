from __future__ import annotations

from django.http import HttpRequest


def stalled_campaigns(request: HttpRequest) -> dict:
    """The dashboard banner's list: the current project's stalled campaigns, read lazily."""
    project = getattr(request, "project", None)
    if project is None:
        return {}
    from postroom.campaigns.models import Campaign

    return {
        "stalled_campaigns": lambda: list(
            Campaign.objects.filter(project=project).exclude(stalled_at=None)[:3]
        )
    }
