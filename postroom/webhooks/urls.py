from django.urls import path

from postroom.webhooks import views

project_urlpatterns = [
    path("webhooks/", views.webhooks, name="webhooks"),
    path("webhooks/new/", views.webhook_edit, name="webhook_new"),
    path("webhooks/<uuid:code>/", views.webhook_detail, name="webhook"),
    path("webhooks/<uuid:code>/edit/", views.webhook_edit, name="webhook_edit"),
    path(
        "webhooks/<uuid:code>/<str:action>/",
        views.webhook_action,
        name="webhook_action",
    ),
    path(
        "webhooks/<uuid:code>/deliveries/<uuid:delivery_code>/",
        views.webhook_delivery,
        name="webhook_delivery",
    ),
]
