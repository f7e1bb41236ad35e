from django.urls import path

from postroom.automations import views

project_urlpatterns = [
    path("automations/", views.automations, name="automations"),
    path("automations/new/", views.automation_edit, name="automation_new"),
    path("automations/<uuid:code>/", views.automation_detail, name="automation"),
    path("automations/<uuid:code>/settings/", views.automation_edit, name="automation_edit"),
    path("automations/<uuid:code>/runs/", views.automation_runs, name="automation_runs"),
    path(
        "automations/<uuid:code>/steps/add/",
        views.automation_step_add,
        name="automation_step_add",
    ),
    path(
        "automations/<uuid:code>/steps/<int:number>/",
        views.automation_step_edit,
        name="automation_step",
    ),
    path(
        "automations/<uuid:code>/steps/<int:number>/<str:action>/",
        views.automation_step_action,
        name="automation_step_action",
    ),
    path(
        "automations/<uuid:code>/<str:action>/",
        views.automation_action,
        name="automation_action",
    ),
]
