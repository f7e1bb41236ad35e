"""The signup forms pages: the list, create and edit, and a form's page with its hosted
link, its embed snippet and its recent signups."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.views.decorators.http import require_POST

from postroom.accounts.decorators import project_view
from postroom.lib.keyset import keyset_page
from postroom.signups.actions import HONEYPOT, form_items
from postroom.signups.forms import SignupFormForm
from postroom.signups.models import Signup, SignupForm

PAGE_SIZE = 50


def _get_form(request: HttpRequest, code) -> SignupForm:
    return get_object_or_404(SignupForm, project=request.project, code=code)


def _back(request: HttpRequest, signup_form: SignupForm) -> HttpResponse:
    return redirect("signup_form", project_code=request.project.code, code=signup_form.code)


def hosted_url(signup_form: SignupForm) -> str:
    # From SITE_URL, never the request's Host header: the snippet goes onto other sites.
    return settings.SITE_URL + reverse("hosted_form", kwargs={"code": signup_form.code})


def embed_snippet(signup_form: SignupForm) -> str:
    """A plain HTML form posting to the hosted page: no script, no styles to load."""
    context = {
        "signup_form": signup_form,
        "items": form_items(signup_form),
        "action": hosted_url(signup_form),
        "honeypot": HONEYPOT,
        "embed": True,
    }
    html = render_to_string("signups/_form.html", context)
    return "\n".join(line for line in html.splitlines() if line.strip()) + "\n"


@project_view
def form_list(request: HttpRequest) -> HttpResponse:
    qs = SignupForm.objects.filter(project=request.project)
    page = keyset_page(
        qs, after=request.GET.get("after"), before=request.GET.get("before"), size=PAGE_SIZE
    )
    return render(request, "signups/list.html", {"page": page})


@project_view
def form_edit(request: HttpRequest, code=None) -> HttpResponse:
    signup_form = _get_form(request, code) if code else SignupForm(project=request.project)
    form = SignupFormForm(request.POST or None, instance=signup_form, project=request.project)
    if request.method == "POST" and form.is_valid():
        signup_form = form.save()
        messages.success(request, f"Signup form “{signup_form.name}” saved.")
        return _back(request, signup_form)
    context = {"form": form, "signup_form": signup_form if code else None}
    return render(request, "signups/edit.html", context)


@project_view
def form_detail(request: HttpRequest, code) -> HttpResponse:
    signup_form = _get_form(request, code)
    signups = Signup.objects.filter(form=signup_form)
    page = keyset_page(
        signups.select_related("message", "contact"),
        after=request.GET.get("after"),
        before=request.GET.get("before"),
        size=PAGE_SIZE,
    )
    counts = signups.aggregate(
        total=Count("id"), confirmed=Count("id", filter=Q(confirmed_at__isnull=False))
    )
    context = {
        "signup_form": signup_form,
        "page": page,
        "counts": counts,
        "hosted_url": hosted_url(signup_form),
        "embed": embed_snippet(signup_form),
    }
    return render(request, "signups/detail.html", context)


@require_POST
@project_view
def form_delete(request: HttpRequest, code) -> HttpResponse:
    signup_form = _get_form(request, code)
    signup_form.delete()
    messages.success(
        request,
        f"Signup form “{signup_form.name}” deleted. Its contacts stay, with their consent.",
    )
    return redirect("signup_forms", project_code=request.project.code)
