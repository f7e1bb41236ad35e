from __future__ import annotations

from urllib.parse import urlsplit

from django import forms
from django.utils import timezone

from postroom.accounts.models import Project
from postroom.contacts.actions import ContactError, clean_tag_names
from postroom.content.sandbox import TemplateProblem, compile_template, variables_used
from postroom.lib.emails import one_line
from postroom.signups.actions import field_choices
from postroom.signups.models import SignupForm


class SignupFormForm(forms.ModelForm):
    """A signup form's settings on the dashboard."""

    asked = forms.MultipleChoiceField(
        label="Fields to ask (besides the email)",
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Add more under Custom fields.",
    )
    required_fields = forms.MultipleChoiceField(
        label="Required", required=False, widget=forms.CheckboxSelectMultiple
    )
    success_url = forms.URLField(
        label="… or redirect to",
        required=False,
        max_length=2000,
        assume_scheme="https",
        help_text="An http(s) address of your own site.",
    )
    confirmed_url = forms.URLField(
        label="… or redirect to", required=False, max_length=2000, assume_scheme="https"
    )
    tags_text = forms.CharField(
        label="Tags to apply",
        required=False,
        help_text="Comma-separated, given to each contact who signs up, e.g. newsletter",
    )

    class Meta:
        model = SignupForm
        fields = [
            "name",
            "title",
            "intro",
            "button_label",
            "double_opt_in",
            "confirm_subject",
            "confirm_text",
            "success_message",
            "success_url",
            "confirmed_message",
            "confirmed_url",
            "event_name",
            "active",
        ]
        widgets = {
            "intro": forms.Textarea(attrs={"rows": 3}),
            "confirm_text": forms.Textarea(attrs={"rows": 10}),
            "success_message": forms.Textarea(attrs={"rows": 2}),
            "confirmed_message": forms.Textarea(attrs={"rows": 2}),
        }
        labels = {
            "name": "Name (for you)",
            "title": "Heading on the hosted page",
            "intro": "Text under the heading",
            "double_opt_in": "Double opt-in: email a confirmation link first",
            "confirm_subject": "Confirmation email subject",
            "confirm_text": "Confirmation email text",
            "success_message": "Message after signing up",
            "confirmed_message": "Message after confirming",
            "event_name": "Event recorded for a confirmed signup",
            "active": "Taking signups",
        }
        help_texts = {
            "title": "Leave empty to use the name.",
            "confirm_subject": "May use {{ project.name }} and {{ form.title }}.",
            "confirm_text": "Must contain {{ confirm_url }}. May use {{ contact.email }}, "
            "{{ project.name }}, {{ form.title }}. What visitors typed ({{ contact.first_name "
            "}}…) goes to whatever address they typed: think twice before using it.",
            "success_message": "Leave empty for a message that suits the double opt-in setting.",
            "event_name": "A custom event for the contact: start a welcome series from it.",
        }

    def __init__(self, *args, project: Project, **kwargs):
        super().__init__(*args, **kwargs)
        choices = field_choices(project)
        self.fields["asked"].choices = choices
        self.fields["required_fields"].choices = choices
        if not self.is_bound:
            self.initial.update(
                asked=self.instance.fields,
                required_fields=self.instance.required,
                tags_text=", ".join(self.instance.tags),
            )

    def clean_name(self) -> str:
        name = one_line(self.cleaned_data["name"])
        if not name:
            raise forms.ValidationError("The name is required.")
        return name

    def clean_title(self) -> str:
        return one_line(self.cleaned_data["title"])

    def clean_button_label(self) -> str:
        return one_line(self.cleaned_data["button_label"]) or "Subscribe"

    def clean_tags_text(self) -> list[str]:
        try:
            return clean_tag_names(self.cleaned_data["tags_text"].split(","))
        except ContactError as e:
            raise forms.ValidationError(e.message) from None

    def clean_confirm_subject(self) -> str:
        subject = one_line(self.cleaned_data["confirm_subject"])  # a header: one line
        check_template(subject)
        return subject

    def clean_confirm_text(self) -> str:
        text = self.cleaned_data["confirm_text"]
        check_template(text)
        if "confirm_url" not in variables_used(text):
            raise forms.ValidationError(
                "Put {{ confirm_url }} in the text: it is the link that confirms."
            )
        return text

    def clean_success_url(self) -> str:
        return web_address(self.cleaned_data["success_url"])

    def clean_confirmed_url(self) -> str:
        return web_address(self.cleaned_data["confirmed_url"])

    def clean_event_name(self) -> str:
        name = self.cleaned_data["event_name"].strip()
        if not name.isprintable():
            raise forms.ValidationError("One line of printable characters.")
        return name

    def clean(self) -> dict:
        cleaned = super().clean()
        asked = cleaned.get("asked") or []
        missing = [n for n in cleaned.get("required_fields") or [] if n not in asked]
        if missing:
            self.add_error(
                "required_fields", f"Tick {', '.join(missing)} under “Fields to ask” too."
            )
        return cleaned

    def save(self, commit: bool = True) -> SignupForm:
        form = super().save(commit=False)
        order = [value for value, _ in self.fields["asked"].choices]
        form.fields = [n for n in order if n in self.cleaned_data["asked"]]
        form.required = [n for n in form.fields if n in self.cleaned_data["required_fields"]]
        form.tags = self.cleaned_data["tags_text"]
        form.updated_at = timezone.now()
        if commit:
            form.save()
        return form


def check_template(source: str) -> None:
    try:
        compile_template(source, html=False)
    except TemplateProblem as e:
        raise forms.ValidationError(str(e)) from None


def web_address(url: str) -> str:
    """An http or https address, or none: never javascript:, data: or another scheme."""
    url = url.strip()
    if url and (urlsplit(url).scheme.lower() not in ("http", "https") or not urlsplit(url).netloc):
        raise forms.ValidationError("An address starting with https:// or http://.")
    return url
