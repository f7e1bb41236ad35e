from django.urls import path

from postroom.imports import views

project_urlpatterns = [
    path("imports/", views.imports, name="imports"),
    path("imports/<uuid:code>/", views.import_detail, name="import"),
    path("imports/<uuid:code>/cancel/", views.import_cancel, name="import_cancel"),
    path("imports/<uuid:code>/for-real/", views.import_for_real, name="import_for_real"),
    path("imports/<uuid:code>/rejected.csv", views.import_report, name="import_report"),
]
