"""The REST API: every app's router mounted under /api/v1/, docs at /api/docs.

Errors are always JSON:
    {"success": false, "code": ..., "message": ..., "errors": [{"field": ..., "message": ...}]}
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError

from postroom.accounts.api import router as accounts_router
from postroom.automations.api import automations_router
from postroom.campaigns.api import campaigns_router
from postroom.contacts.api import (
    contacts_router,
    fields_router,
    segments_router,
    suppressions_router,
)
from postroom.content.api import templates_router
from postroom.delivery.api import router as delivery_router
from postroom.delivery.api import senders_router
from postroom.imports.api import imports_router
from postroom.lib.apierrors import CODES, ApiError, error_body
from postroom.signups.api import signups_router
from postroom.tracking.api import router as tracking_router
from postroom.webhooks.api import webhooks_router

log = logging.getLogger(__name__)

ERROR_SCHEMA = {
    "title": "Error",
    "type": "object",
    "required": ["success", "code", "message", "errors"],
    "properties": {
        "success": {"type": "boolean", "const": False},
        "code": {"type": "string", "enum": sorted(set(CODES.values()))},
        "message": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["field", "message"],
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
}


class PostroomAPI(NinjaAPI):
    """django-ninja documents each operation's successes only: every operation also answers
    4xx with our error shape, so the document says so once, here."""

    def get_openapi_schema(self, *, path_prefix=None, path_params=None):
        schema = super().get_openapi_schema(path_prefix=path_prefix, path_params=path_params)
        schema.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
        error = {
            "description": "Bad input, no or the wrong key, not found, a conflict, too many "
            "requests: the message says which.",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                operation.setdefault("responses", {}).setdefault("4XX", error)
        return schema


api = PostroomAPI(
    title="Postroom API",
    version="1",
    urls_namespace="api",
    docs_url="/docs",
    openapi_url="/openapi.json",
    description="Authenticate with `Authorization: Bearer sk_...` (secret key). "
    "The public key `pk_...` works only where an endpoint says so.",
)
api.add_router("/v1/", accounts_router)
api.add_router("/v1/contacts", contacts_router)
api.add_router("/v1/segments", segments_router)
api.add_router("/v1/fields", fields_router)
api.add_router("/v1/suppressions", suppressions_router)
api.add_router("/v1/campaigns", campaigns_router)
api.add_router("/v1/templates", templates_router)
api.add_router("/v1/webhooks", webhooks_router)
api.add_router("/v1/signup-forms", signups_router)
api.add_router("/v1/automations", automations_router)
api.add_router("/v1/", tracking_router)
api.add_router("/v1/", delivery_router)
api.add_router("/v1/senders", senders_router)
api.add_router("/v1/imports", imports_router)


def error_response(
    request: HttpRequest, status: int, message: str, errors: list | None = None
) -> HttpResponse:
    return api.create_response(request, error_body(status, message, errors), status=status)


@api.exception_handler(ApiError)
def on_api_error(request: HttpRequest, exc: ApiError) -> HttpResponse:
    errors = [{"field": exc.field, "message": exc.message}] if exc.field else []
    return error_response(request, exc.status, exc.full_message, errors)


@api.exception_handler(ValidationError)
def on_validation_error(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    errors = []
    for e in exc.errors:
        loc = [str(p) for p in e.get("loc", []) if p not in ("body", "payload", "query", "path")]
        errors.append({"field": ".".join(loc) or "body", "message": e.get("msg", "invalid")})
    summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
    return error_response(request, 422, f"Invalid request: {summary}", errors)


@api.exception_handler(AuthenticationError)
def on_auth_error(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    return error_response(
        request, 401, "Missing or invalid API key: send the header Authorization: Bearer sk_..."
    )


@api.exception_handler(HttpError)
def on_http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    return error_response(request, exc.status_code, str(exc))


@api.exception_handler(RequestDataTooBig)
def on_too_big(request: HttpRequest, exc: RequestDataTooBig) -> HttpResponse:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE // 2**20
    return error_response(request, 413, f"The request body is larger than {limit} MB.")


@api.exception_handler(RecursionError)
def on_too_deep(request: HttpRequest, exc: RecursionError) -> HttpResponse:
    return error_response(request, 400, "The request body is nested too deeply.")


@api.exception_handler(Http404)
def on_not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    return error_response(request, 404, str(exc) or "Not found.")


@api.exception_handler(Exception)
def on_unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
    log.exception("API error on %s %s", request.method, request.path)
    return error_response(request, 500, "Internal error; it has been logged.")
