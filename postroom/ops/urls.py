from django.urls import path

from postroom.ops import views

urlpatterns = [
    path("health/", views.health_page, name="health"),
    path("health.json", views.health_json, name="health_json"),
]

project_urlpatterns = [
    path("", views.overview, name="overview"),
]
