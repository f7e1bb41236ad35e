"""Webhooks API (secret key): a project's endpoints and their delivery logs.

GET    /api/v1/webhooks                                   the endpoints, with their secrets
POST   /api/v1/webhooks                                   {url, event_types, description?} (201)
GET    /api/v1/webhooks/{id}
PATCH  /api/v1/webhooks/{id}                              url, event_types, description, enabled
DELETE /api/v1/webhooks/{id}
POST   /api/v1/webhooks/{id}/test                         queue a `webhook.test` delivery (202)
POST   /api/v1/webhooks/{id}/rotate-secret                a new secret; the old one stops
GET    /api/v1/webhooks/{id}/deliveries                   keyset pages: ?limit=&cursor=&state=
POST   /api/v1/webhooks/{id}/deliveries/{d}/redeliver     the same body again, as a new delivery

A URL that is not http(s), or that resolves to a private, loopback or link-local address, is a
422 on `url` (webhooks.targets); an unknown event type a 422 on `event_types`.
"""

from __future__ import annotations

from django.http import Http404, HttpRequest
from ninja import Query, Router
from ninja import Status as Reply

from postroom.accounts.auth import secret_key_auth
from postroom.lib.apierrors import ApiError
from postroom.lib.keyset import keyset_page
from postroom.lib.scoping import get_in_project_or_404
from postroom.webhooks import actions
from postroom.webhooks.actions import EndpointError
from postroom.webhooks.models import Delivery, Endpoint
from postroom.webhooks.schemas import (
    DeliveryOut,
    DeliveryPage,
    DeliveryQuery,
    EndpointDeleted,
    EndpointIn,
    EndpointOut,
    EndpointPatch,
)

webhooks_router = Router(tags=["webhooks"], auth=secret_key_auth)


def _get_endpoint(request: HttpRequest, endpoint_id: str) -> Endpoint:
    return get_in_project_or_404(Endpoint, request.auth, endpoint_id, "webhook endpoint")


def endpoint_out(endpoint: Endpoint) -> dict:
    return {
        "id": str(endpoint.code),
        **{
            name: getattr(endpoint, name)
            for name in (
                "url",
                "description",
                "event_types",
                "secret",
                "enabled",
                "disabled_reason",
                "failing_since",
                "next_attempt_at",
                "consecutive_failures",
                "last_success_at",
                "created_at",
            )
        },
    }


def delivery_out(delivery: Delivery) -> dict:
    return {
        "id": str(delivery.code),
        **{
            name: getattr(delivery, name)
            for name in (
                "event_type",
                "state",
                "attempts",
                "next_attempt_at",
                "last_status",
                "last_response",
                "last_error",
                "created_at",
                "delivered_at",
                "payload",
            )
        },
    }


def _problem(e: EndpointError) -> ApiError:
    return ApiError(422, e.message, e.field)


@webhooks_router.get("", response=list[EndpointOut])
def list_webhooks(request: HttpRequest) -> list[dict]:
    endpoints = Endpoint.objects.filter(project=request.auth).order_by("id")
    return [endpoint_out(e) for e in endpoints]


@webhooks_router.post("", response={201: EndpointOut})
def create_webhook(request: HttpRequest, body: EndpointIn) -> Reply:
    try:
        endpoint = actions.create_endpoint(
            request.auth, body.url, body.event_types, body.description
        )
    except EndpointError as e:
        raise _problem(e) from None
    return Reply(201, endpoint_out(endpoint))


@webhooks_router.get("/{endpoint_id}", response=EndpointOut)
def get_webhook(request: HttpRequest, endpoint_id: str) -> dict:
    return endpoint_out(_get_endpoint(request, endpoint_id))


@webhooks_router.patch("/{endpoint_id}", response=EndpointOut)
def update_webhook(request: HttpRequest, endpoint_id: str, body: EndpointPatch) -> dict:
    endpoint = _get_endpoint(request, endpoint_id)
    changes = body.dict(exclude_unset=True)
    if changes.keys() & {"url", "event_types", "description"}:
        try:
            actions.update_endpoint(
                endpoint,
                changes.get("url") or endpoint.url,
                changes.get("event_types") or endpoint.event_types,
                endpoint.description
                if changes.get("description") is None
                else changes["description"],
            )
        except EndpointError as e:
            raise _problem(e) from None
    if changes.get("enabled") is True and not endpoint.enabled:
        actions.enable(endpoint)
    elif changes.get("enabled") is False and endpoint.enabled:
        actions.disable(endpoint, "Disabled through the API.")
    endpoint.refresh_from_db()
    return endpoint_out(endpoint)


@webhooks_router.delete("/{endpoint_id}", response=EndpointDeleted)
def delete_webhook(request: HttpRequest, endpoint_id: str) -> dict:
    endpoint = _get_endpoint(request, endpoint_id)
    code = str(endpoint.code)
    actions.delete_endpoint(endpoint)
    return {"success": True, "id": code}


@webhooks_router.post("/{endpoint_id}/test", response={202: DeliveryOut})
def test_webhook(request: HttpRequest, endpoint_id: str) -> Reply:
    endpoint = _get_endpoint(request, endpoint_id)
    if not endpoint.enabled:
        raise ApiError(409, "the endpoint is disabled: enable it first.")
    return Reply(202, delivery_out(actions.send_test(endpoint)))


@webhooks_router.post("/{endpoint_id}/rotate-secret", response=EndpointOut)
def rotate_webhook_secret(request: HttpRequest, endpoint_id: str) -> dict:
    endpoint = _get_endpoint(request, endpoint_id)
    actions.rotate_secret(endpoint)
    return endpoint_out(endpoint)


@webhooks_router.get("/{endpoint_id}/deliveries", response=DeliveryPage)
def list_webhook_deliveries(
    request: HttpRequest, endpoint_id: str, query: Query[DeliveryQuery]
) -> dict:
    endpoint = _get_endpoint(request, endpoint_id)
    deliveries = Delivery.objects.filter(endpoint=endpoint)
    if query.state:
        if query.state not in Delivery.State.values:
            raise ApiError(422, f"must be one of {Delivery.State.values}.", "state")
        deliveries = deliveries.filter(state=query.state)
    page = keyset_page(deliveries, after=query.cursor, size=query.limit)
    return {"items": [delivery_out(d) for d in page.items], "next_cursor": page.next_cursor}


@webhooks_router.post(
    "/{endpoint_id}/deliveries/{delivery_id}/redeliver", response={202: DeliveryOut}
)
def redeliver_webhook(request: HttpRequest, endpoint_id: str, delivery_id: str) -> Reply:
    endpoint = _get_endpoint(request, endpoint_id)
    delivery = get_in_project_or_404(Delivery, request.auth, delivery_id, "delivery")
    if delivery.endpoint_id != endpoint.id:
        raise Http404("No such delivery.")
    try:
        return Reply(202, delivery_out(actions.redeliver(delivery)))
    except EndpointError as e:
        raise ApiError(409, f"the endpoint {e.message}") from None
