"""Accounts API.

GET /api/v1/project   the project of the key in use
"""

from __future__ import annotations

from django.http import HttpRequest
from ninja import Router, Schema

from postroom.accounts.auth import secret_key_auth

router = Router(tags=["project"], auth=secret_key_auth)


class ProjectOut(Schema):
    id: str
    name: str
    public_key: str


@router.get("/project", response=ProjectOut)
def get_project(request: HttpRequest) -> dict:
    project = request.auth
    return {"id": str(project.code), "name": project.name, "public_key": project.public_key}
