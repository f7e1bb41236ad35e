from __future__ import annotations

import zoneinfo

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from postroom.accounts import actions
from postroom.accounts.decorators import project_view
from postroom.accounts.forms import (
    InviteForm,
    KeyForm,
    ProjectForm,
    RoleForm,
    SignupForm,
    ThrottledLoginForm,
)
from postroom.accounts.models import ApiKey, Invitation, Membership, Role, User


class LoginView(auth_views.LoginView):
    form_class = ThrottledLoginForm
    redirect_authenticated_user = True


class PasswordResetView(auth_views.PasswordResetView):
    # The link in the email is built from SITE_URL, never from the request's Host header
    # (which a client chooses: a reset link pointing at an attacker's host leaks the token).
    def form_valid(self, form):
        self.extra_email_context = {"site_url": settings.SITE_URL}
        return super().form_valid(form)


def _show_key_once(request: HttpRequest, project, raw_key: str) -> None:
    """Keep a new raw key in the session until its project's settings page shows it once."""
    request.session["new_secret_key"] = {"project": str(project.code), "key": raw_key}


def _pop_key_to_show(request: HttpRequest, project) -> str | None:
    pending = request.session.get("new_secret_key")
    if not isinstance(pending, dict) or pending.get("project") != str(project.code):
        return None
    del request.session["new_secret_key"]
    return pending["key"]


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """Send the user to their most recent project, or to create their first one."""
    membership = request.user.memberships.select_related("project").order_by("-created_at").first()
    if membership is None:
        return redirect("projects")
    return redirect("overview", project_code=membership.project.code)


@login_required
def projects(request: HttpRequest) -> HttpResponse:
    form = ProjectForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        project, raw_key = actions.create_project(form.cleaned_data["name"], request.user)
        messages.success(request, f"Project “{project.name}” created.")
        _show_key_once(request, project, raw_key)
        return redirect("project_settings", project_code=project.code)
    memberships = (
        request.user.memberships.select_related("project")
        .annotate(members=Count("project__memberships"))
        .order_by("project__name")
    )
    return render(request, "accounts/projects.html", {"form": form, "memberships": memberships})


@project_view
def project_settings(request: HttpRequest) -> HttpResponse:
    project = request.project
    context = {
        "members": project.memberships.select_related("user").order_by("created_at"),
        "invitations": [i for i in project.invitations.filter(accepted_at=None) if i.is_pending()],
        "keys": project.api_keys.order_by("-created_at"),
        "new_secret_key": _pop_key_to_show(request, project),
        "project_form": ProjectForm(initial={"name": project.name}),
        "time_zones": sorted(zoneinfo.available_timezones()),
        "invite_form": InviteForm(can_invite_owner=request.membership.role == Role.OWNER),
        "key_form": KeyForm(),
        "roles": Role.choices,
    }
    return render(request, "accounts/settings.html", context)


@require_POST
@project_view(manage=True)
def rename_project(request: HttpRequest) -> HttpResponse:
    form = ProjectForm(request.POST)
    if form.is_valid():
        request.project.name = form.cleaned_data["name"]
        if "postal_address" in request.POST:
            request.project.postal_address = form.cleaned_data["postal_address"]
        if form.cleaned_data["time_zone"]:
            request.project.time_zone = form.cleaned_data["time_zone"]
        request.project.save(update_fields=["name", "postal_address", "time_zone"])
        messages.success(request, "Project saved.")
    else:
        problems = "; ".join(f"{k}: {' '.join(v)}" for k, v in form.errors.items())
        messages.error(request, f"Not saved: {problems}")
    return redirect("project_settings", project_code=request.project.code)


@require_POST
@project_view(manage=True)
def create_key(request: HttpRequest) -> HttpResponse:
    form = KeyForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Give the key a name (at most 100 characters).")
    else:
        _, raw = actions.create_secret_key(request.project, form.cleaned_data["name"], request.user)
        _show_key_once(request, request.project, raw)
    return redirect("project_settings", project_code=request.project.code)


@require_POST
@project_view(manage=True)
def revoke_key(request: HttpRequest, key_code) -> HttpResponse:
    key = get_object_or_404(ApiKey, project=request.project, code=key_code)
    actions.revoke_key(key)
    messages.success(request, f"Key “{key.name}” revoked: requests using it now get a 401.")
    return redirect("project_settings", project_code=request.project.code)


@require_POST
@project_view(manage=True)
def rotate_public_key(request: HttpRequest) -> HttpResponse:
    actions.rotate_public_key(request.project)
    messages.success(request, "New public key made; the old one no longer works.")
    return redirect("project_settings", project_code=request.project.code)


@require_POST
@project_view(manage=True)
def invite(request: HttpRequest) -> HttpResponse:
    form = InviteForm(request.POST, can_invite_owner=request.membership.role == Role.OWNER)
    if not form.is_valid():
        for field, errors in form.errors.items():
            messages.error(request, f"{field}: {' '.join(errors)}")
    elif request.project.memberships.filter(
        user__email=form.cleaned_data["email"].lower()
    ).exists():
        messages.error(request, f"{form.cleaned_data['email']} is already a member.")
    else:
        try:
            actions.invite_member(
                request.project, form.cleaned_data["email"], form.cleaned_data["role"], request.user
            )
        except actions.InvitationNotSent as e:
            messages.error(request, f"{e} Check POSTROOM_SMTP_URL (see System health).")
        else:
            messages.success(request, f"Invitation sent to {form.cleaned_data['email']}.")
    return redirect("project_settings", project_code=request.project.code)


@require_POST
@project_view(manage=True)
def cancel_invitation(request: HttpRequest, invitation_id: int) -> HttpResponse:
    invitation = get_object_or_404(Invitation, project=request.project, id=invitation_id)
    invitation.delete()
    return redirect("project_settings", project_code=request.project.code)


def _get_member(request: HttpRequest, membership_id: int) -> Membership:
    member = get_object_or_404(Membership, project=request.project, id=membership_id)
    # Only an owner may change or remove an owner.
    if member.role == Role.OWNER and request.membership.role != Role.OWNER:
        raise PermissionDenied("Only an owner can change an owner.")
    return member


def _is_last_owner(member: Membership) -> bool:
    owners = Membership.objects.filter(project=member.project, role=Role.OWNER)
    return member.role == Role.OWNER and owners.count() == 1


@require_POST
@project_view(manage=True)
def change_role(request: HttpRequest, membership_id: int) -> HttpResponse:
    member = _get_member(request, membership_id)
    form = RoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Unknown role.")
    elif form.cleaned_data["role"] == Role.OWNER and request.membership.role != Role.OWNER:
        messages.error(request, "Only an owner can make another owner.")
    elif _is_last_owner(member) and form.cleaned_data["role"] != Role.OWNER:
        messages.error(request, "A project needs at least one owner.")
    else:
        member.role = form.cleaned_data["role"]
        member.save(update_fields=["role"])
        messages.success(request, f"{member.user.email} is now {member.get_role_display()}.")
    return redirect("project_settings", project_code=request.project.code)


@require_POST
@project_view
def remove_member(request: HttpRequest, membership_id: int) -> HttpResponse:
    # Anyone may leave; removing someone else needs owner or admin.
    leaving = str(request.membership.id) == str(membership_id)
    if not leaving and not request.membership.can_manage():
        raise PermissionDenied("Only owners and admins can remove members.")
    member = _get_member(request, membership_id)
    if _is_last_owner(member):
        messages.error(
            request, "A project needs at least one owner: make someone else owner first."
        )
        return redirect("project_settings", project_code=request.project.code)
    member.delete()
    if leaving:
        messages.success(request, f"You left {request.project.name}.")
        return redirect("home")
    messages.success(request, f"{member.user.email} removed.")
    return redirect("project_settings", project_code=request.project.code)


def accept_invite(request: HttpRequest, token: str) -> HttpResponse:
    invitation = Invitation.objects.select_related("project").filter(token=token).first()
    if invitation is None or not invitation.is_pending():
        raise Http404("This invitation does not exist, was used, or has expired.")
    context = {"invitation": invitation}
    if request.user.is_authenticated:
        # The invitation is for one address: an owner's invite must not be usable by whoever
        # else gets hold of the link.
        if request.user.email != invitation.email:
            context["wrong_account"] = True
        elif request.method == "POST":
            actions.accept_invitation(invitation, request.user)
            messages.success(request, f"You joined {invitation.project.name}.")
            return redirect("overview", project_code=invitation.project.code)
        return render(request, "accounts/invite.html", context)
    if User.objects.filter(email=invitation.email).exists():
        return redirect(f"{reverse('login')}?next=/invite/{token}/")
    return _sign_up_and_accept(request, invitation)


def _sign_up_and_accept(request: HttpRequest, invitation: Invitation) -> HttpResponse:
    """A new account for the invited address (and no other), then the membership."""
    data = None
    if request.method == "POST":
        data = request.POST.copy()
        data["email"] = invitation.email
    form = SignupForm(data, initial={"email": invitation.email})
    form.fields["email"].disabled = True
    if request.method == "POST" and form.is_valid():
        user = User.objects.create_user(
            form.cleaned_data["email"],
            form.cleaned_data["password"],
            name=form.cleaned_data["name"],
        )
        login(request, user, backend=settings.AUTHENTICATION_BACKENDS[0])
        actions.accept_invitation(invitation, user)
        return redirect("overview", project_code=invitation.project.code)
    return render(request, "accounts/invite.html", {"invitation": invitation, "form": form})


def signup(request: HttpRequest) -> HttpResponse:
    if not settings.REGISTRATION_OPEN:
        raise Http404("Sign-up is closed: ask an admin of this Postroom for an invitation.")
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = User.objects.create_user(
            form.cleaned_data["email"],
            form.cleaned_data["password"],
            name=form.cleaned_data["name"],
        )
        login(request, user, backend=settings.AUTHENTICATION_BACKENDS[0])
        return redirect("projects")
    return render(request, "registration/signup.html", {"form": form})
