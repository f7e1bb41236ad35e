"""The API's error shape, shared by the endpoints (postroom.api) and the middleware in front
of them (accounts.middleware):

    {"success": false, "code": ..., "message": ..., "errors": [{"field": ..., "message": ...}]}
"""

from __future__ import annotations

import json

from django.http import HttpResponse

CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    422: "invalid",
    429: "rate_limited",
}


class ApiError(Exception):
    """An API error with a status, a message and, when one field is at fault, its name."""

    def __init__(self, status: int, message: str, field: str | None = None):
        self.status = status
        self.message = message
        self.field = field
        super().__init__(message)

    @property
    def full_message(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


def error_body(status: int, message: str, errors: list | None = None) -> dict:
    return {
        "success": False,
        "code": CODES.get(status, "error"),
        "message": message,
        "errors": errors or [],
    }


def error_response(status: int, message: str, errors: list | None = None) -> HttpResponse:
    return HttpResponse(
        json.dumps(error_body(status, message, errors)),
        status=status,
        content_type="application/json",
    )
