from django.urls import path

from postroom.tracking import dashboard, views

urlpatterns = [
    path("hooks/<uuid:sender_code>/<str:signature>/", views.esp_webhook, name="esp_webhook"),
    path("o/<str:token>.gif", views.open_pixel, name="open_pixel"),
    path("c/<str:token>", views.click, name="click"),
    path("u/<str:token>", views.unsubscribe, name="unsubscribe"),
    path("u/<str:token>/preferences", views.preferences, name="preferences"),
    path(
        "u/<str:token>/confirm/<str:what>/<str:until>/<str:signature>",
        views.confirmed,
        name="confirmed",
    ),
]

project_urlpatterns = [
    path("hooks/<uuid:sender_code>/<str:signature>/", views.esp_webhook, name="esp_webhook"),
    path("events/", dashboard.events, name="events"),
    path("events/test-email/", dashboard.events_test_email, name="events_test_email"),
]
