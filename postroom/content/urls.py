from django.urls import path

from postroom.content import views

project_urlpatterns = [
    path("templates/", views.template_list, name="templates"),
    path("templates/new/", views.template_edit, name="template_new"),
    path("templates/preview/", views.template_preview, name="template_preview"),
    path("templates/<uuid:code>/", views.template_edit, name="template_edit"),
    path("templates/<uuid:code>/delete/", views.template_delete, name="template_delete"),
    path("images/", views.image_upload, name="image_upload"),
    path("images/<uuid:code>/delete/", views.image_delete, name="image_delete"),
]

# Public: images in mail are fetched by mail clients, without a login.
urlpatterns = [path("i/<str:name>", views.image_file, name="image_file")]
