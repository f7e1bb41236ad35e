"""The pages visitors reach without logging in: a form's hosted page (/f/<code>), which the
embeddable snippet posts to as well, and the confirmation link's page (/f/confirm/<token>).

Every accepted submission gets the same answer, whether it made a contact, waits for its
confirmation, was one too many for the address, or was a bot's: the page must never tell
whether an address is already on the list.
"""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.clickjacking import xframe_options_exempt
from django.views.decorators.csrf import csrf_exempt

from postroom.accounts.forms import client_ip
from postroom.signups import actions
from postroom.signups.actions import HONEYPOT, SignupInvalid, Visitor
from postroom.signups.models import SignupForm


def public_form(code) -> SignupForm:
    signup_form = SignupForm.objects.select_related("project").filter(code=code).first()
    if signup_form is None:
        raise Http404("No such form.")
    return signup_form


def form_page(
    request: HttpRequest,
    signup_form: SignupForm,
    values: dict | None = None,
    errors: dict | None = None,
    status: int = 200,
) -> HttpResponse:
    context = {
        "project": signup_form.project,
        "signup_form": signup_form,
        "items": actions.form_items(signup_form, values, errors),
        "honeypot": HONEYPOT,
        "errors": errors,
    }
    return render(request, "signups/hosted.html", context, status=status)


def answer(request: HttpRequest, signup_form: SignupForm, text: str, url: str) -> HttpResponse:
    if url:
        return HttpResponseRedirect(url)  # http(s) only: checked when the form was saved
    context = {"project": signup_form.project, "signup_form": signup_form, "text": text}
    return render(request, "signups/done.html", context)


# CSRF: the hosted page carries Django's token like every form of ours, but the snippet
# embedded on other sites cannot, and a cookie is not even sent from a framed page on another
# site. So this POST is accepted without a token. That is safe because it acts with no one's
# authority: it reads no session, and what a forged post can do is what anyone can do by typing
# into the form. With double opt-in it only ever makes a *pending* signup, and nothing happens
# to any contact until the address's owner opens the emailed, signed link; without it, an
# existing contact is never unsubscribed, resubscribed or overwritten (signups.actions.submit).
@csrf_exempt
@xframe_options_exempt  # the hosted page may be framed by the project's own site
@never_cache
def hosted_form(request: HttpRequest, code) -> HttpResponse:
    signup_form = public_form(code)
    if not signup_form.active:
        context = {"project": signup_form.project, "signup_form": signup_form}
        return render(request, "signups/closed.html", context, status=410)
    if request.method == "POST":
        return take_submission(request, signup_form)
    return form_page(request, signup_form)


def take_submission(request: HttpRequest, signup_form: SignupForm) -> HttpResponse:
    ip = client_ip(request)
    rate = actions.count_submission(signup_form, ip)
    if rate.exceeded:
        context = {"project": signup_form.project, "signup_form": signup_form, "rate": rate}
        response = render(request, "signups/slow_down.html", context, status=429)
        response["Retry-After"] = str(rate.reset_in)
        return response
    if request.POST.get(HONEYPOT):  # a bot: answered as a person would be, nothing kept
        return answer(request, signup_form, signup_form.success_text(), signup_form.success_url)
    try:
        submission = actions.clean_submission(signup_form, request.POST)
    except SignupInvalid as e:
        return form_page(request, signup_form, request.POST, e.errors, status=400)
    visitor = Visitor(
        ip=ip,
        user_agent=request.headers.get("User-Agent", ""),
        referrer=request.headers.get("Referer", ""),
    )
    actions.submit(signup_form, submission, visitor)
    return answer(request, signup_form, signup_form.success_text(), signup_form.success_url)


# The signed link is the only authority here, and it is in the URL: a CSRF token would add
# nothing, and mail apps' own browsers may keep no cookie between the GET and the POST.
@csrf_exempt
@never_cache
def confirm(request: HttpRequest, token: str) -> HttpResponse:
    """GET asks (mail scanners open every link in a message, and must not confirm for the
    reader); POST, the page's button, confirms."""
    signup = actions.signup_for_token(token)
    if signup is None:
        raise Http404("This link is not valid.")
    signup_form = signup.form
    done = signup_form.confirmed_text(), signup_form.confirmed_url
    if signup.confirmed_at is not None:
        return answer(request, signup_form, *done)
    context = {"project": signup_form.project, "signup_form": signup_form, "signup": signup}
    if signup.is_expired():
        return render(request, "signups/expired.html", context, status=410)
    if request.method == "POST":
        actions.confirm(signup)
        return answer(request, signup_form, *done)
    return render(request, "signups/confirm.html", context)
