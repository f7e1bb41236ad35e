from __future__ import annotations

import ipaddress
import zoneinfo

from django import forms
from django.conf import settings
from django.contrib.auth import password_validation
from django.contrib.auth.forms import AuthenticationForm

from postroom.accounts.models import Role, User
from postroom.lib.emails import one_line


def client_ip(request) -> str | None:
    """The client's address: REMOTE_ADDR, or behind our proxy the entry it appended to
    X-Forwarded-For (the last; earlier entries are whatever the client sent)."""
    return client_ip_of(request.META)


def client_ip_of(meta) -> str | None:
    """client_ip from a request's META or a WSGI environ."""
    candidates = []
    if settings.USE_X_FORWARDED_FOR and meta.get("HTTP_X_FORWARDED_FOR"):
        candidates.append(meta["HTTP_X_FORWARDED_FOR"].split(",")[-1].strip())
    candidates.append(meta.get("REMOTE_ADDR", ""))
    for candidate in candidates:
        try:
            return str(ipaddress.ip_address(candidate))
        except ValueError:
            continue
    return None


class ThrottledLoginForm(AuthenticationForm):
    """Django's login form, refusing further tries after too many failures."""

    error_messages = {
        **AuthenticationForm.error_messages,
        "throttled": "Too many failed logins. Try again in %(minutes)s minutes.",
    }

    def clean(self):
        from postroom.accounts.actions import login_blocked_for, record_login_failure

        email = (self.data.get("username") or "").strip().lower()
        ip = client_ip(self.request) if self.request else None
        wait = login_blocked_for(email, ip)
        if wait:
            raise forms.ValidationError(
                self.error_messages["throttled"],
                code="throttled",
                params={"minutes": max(1, round(wait / 60))},
            )
        try:
            return super().clean()
        except forms.ValidationError:
            record_login_failure(email, ip)
            raise


class ProjectForm(forms.Form):
    name = forms.CharField(max_length=100, strip=True)
    postal_address = forms.CharField(max_length=300, required=False, strip=True)
    time_zone = forms.CharField(max_length=64, required=False, strip=True)

    def clean_time_zone(self) -> str:
        zone = self.cleaned_data.get("time_zone") or ""
        if zone and zone not in zoneinfo.available_timezones():
            raise forms.ValidationError("Choose a time zone such as Europe/Paris.")
        return zone

    def clean_postal_address(self) -> str:
        return one_line(self.cleaned_data.get("postal_address", ""))

    def clean_name(self) -> str:
        name = one_line(self.cleaned_data["name"])
        if not name:
            raise forms.ValidationError("The name is required.")
        return name


class InviteForm(forms.Form):
    email = forms.EmailField()
    role = forms.ChoiceField(choices=Role.choices, initial=Role.MEMBER)

    def __init__(self, *args, can_invite_owner: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        if not can_invite_owner:
            self.fields["role"].choices = [(Role.ADMIN, "Admin"), (Role.MEMBER, "Member")]


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)


class KeyForm(forms.Form):
    name = forms.CharField(max_length=100, strip=True)


class SignupForm(forms.Form):
    """Setting a password when accepting an invitation (or signing up when registration is open)."""

    email = forms.EmailField()
    name = forms.CharField(max_length=150, required=False)
    password = forms.CharField(widget=forms.PasswordInput, strip=False)

    def clean_email(self) -> str:
        email = self.cleaned_data["email"].lower()
        if User.objects.filter(email=email).exists():
            raise forms.ValidationError("There is already an account for this address: log in.")
        return email

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("password") and cleaned.get("email"):
            password_validation.validate_password(
                cleaned["password"], User(email=cleaned["email"], name=cleaned.get("name", ""))
            )
        return cleaned
