from django.urls import path

from postroom.ops import views

urlpatterns = [
    path("health/", views.health_page, name="health"),
    path("health.json", views.health_json, name="health_json"),
    path("metrics", views.metrics, name="metrics"),
]

project_urlpatterns = [
    path("", views.overview, name="overview"),
]
