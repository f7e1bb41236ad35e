from django.contrib.auth import views as auth_views
from django.urls import path

from postroom.accounts import views

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("signup/", views.signup, name="signup"),
    path("password/change/", auth_views.PasswordChangeView.as_view(), name="password_change"),
    path(
        "password/change/done/",
        auth_views.PasswordChangeDoneView.as_view(),
        name="password_change_done",
    ),
    path("password/reset/", views.PasswordResetView.as_view(), name="password_reset"),
    path(
        "password/reset/sent/",
        auth_views.PasswordResetDoneView.as_view(),
        name="password_reset_done",
    ),
    path(
        "password/reset/<uidb64>/<token>/",
        auth_views.PasswordResetConfirmView.as_view(),
        name="password_reset_confirm",
    ),
    path(
        "password/reset/done/",
        auth_views.PasswordResetCompleteView.as_view(),
        name="password_reset_complete",
    ),
    path("projects/", views.projects, name="projects"),
    path("invite/<str:token>/", views.accept_invite, name="accept_invite"),
]

project_urlpatterns = [
    path("settings/", views.project_settings, name="project_settings"),
    path("settings/rename/", views.rename_project, name="rename_project"),
    path("settings/keys/", views.create_key, name="create_key"),
    path("settings/keys/<uuid:key_code>/revoke/", views.revoke_key, name="revoke_key"),
    path("settings/public-key/rotate/", views.rotate_public_key, name="rotate_public_key"),
    path("settings/invite/", views.invite, name="invite"),
    path(
        "settings/invitations/<int:invitation_id>/cancel/",
        views.cancel_invitation,
        name="cancel_invitation",
    ),
    path("settings/members/<int:membership_id>/role/", views.change_role, name="change_role"),
    path("settings/members/<int:membership_id>/remove/", views.remove_member, name="remove_member"),
]
