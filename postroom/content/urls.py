from django.urls import path

from postroom.content import views

project_urlpatterns = [
    path("templates/", views.template_list, name="templates"),
    path("templates/new/", views.template_edit, name="template_new"),
    path("templates/preview/", views.template_preview, name="template_preview"),
    path("templates/<uuid:code>/", views.template_edit, name="template_edit"),
    path("templates/<uuid:code>/delete/", views.template_delete, name="template_delete"),
]
