from __future__ import annotations

from django import forms

from postroom.accounts.models import one_line
from postroom.delivery.models import Sender
from postroom.lib.emails import InvalidEmail, normalise_email


class SenderForm(forms.ModelForm):
    # Write-only: left empty on edit, the stored password is kept.
    password = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Stored encrypted. Leave empty to keep the current one.",
    )

    class Meta:
        model = Sender
        fields = [
            "name",
            "kind",
            "from_email",
            "from_name",
            "from_domains",
            "host",
            "port",
            "security",
            "username",
            "timeout",
            "per_second",
            "per_minute",
            "per_hour",
            "per_day",
            "on_unknown",
        ]
        help_texts = {
            "from_domains": "Other domains this sender may send from, comma-separated.",
            "per_hour": "A new domain warming up might start at 35 an hour.",
            "on_unknown": "After a crash, messages in flight have an unknown fate.",
        }

    def clean_name(self) -> str:
        return one_line(self.cleaned_data["name"])

    def clean_from_name(self) -> str:
        return one_line(self.cleaned_data["from_name"])

    def clean_from_email(self) -> str:
        try:
            return normalise_email(self.cleaned_data["from_email"])
        except InvalidEmail as e:
            raise forms.ValidationError(str(e)) from None

    def clean_from_domains(self) -> str:
        domains = [
            d.strip().lower() for d in self.cleaned_data["from_domains"].split(",") if d.strip()
        ]
        for d in domains:
            try:
                normalise_email(f"x@{d}")
            except InvalidEmail:
                raise forms.ValidationError(f"{d!r} is not a domain name.") from None
        return ", ".join(domains)

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("kind") == Sender.Kind.SMTP and not cleaned.get("host"):
            self.add_error("host", "An SMTP sender needs the relay's host name.")
        return cleaned

    def save(self, commit: bool = True) -> Sender:
        sender = super().save(commit=False)
        if self.cleaned_data.get("password"):
            sender.password = self.cleaned_data["password"]
        if commit:
            sender.save()
        return sender


class TestEmailForm(forms.Form):
    to = forms.CharField(max_length=254, label="Send a test email to")
