from django.urls import path

from postroom.signups import public, views

urlpatterns = [
    path("f/confirm/<str:token>", public.confirm, name="confirm_signup"),
    path("f/<uuid:code>", public.hosted_form, name="hosted_form"),
]

project_urlpatterns = [
    path("forms/", views.form_list, name="signup_forms"),
    path("forms/new/", views.form_edit, name="signup_form_new"),
    path("forms/<uuid:code>/", views.form_detail, name="signup_form"),
    path("forms/<uuid:code>/edit/", views.form_edit, name="signup_form_edit"),
    path("forms/<uuid:code>/delete/", views.form_delete, name="signup_form_delete"),
]
