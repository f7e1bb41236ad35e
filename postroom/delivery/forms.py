from __future__ import annotations

import re

from django import forms
from django.core.validators import URLValidator

from postroom.delivery.models import Sender
from postroom.delivery.transports.anymail import ESPS
from postroom.lib.emails import InvalidEmail, normalise_email, normalise_sender_email, one_line

AWS_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$")
AWS_KEY_ID = re.compile(r"^[A-Z0-9]{16,128}$")
# What each service calls its secret, for "Postmark needs the server token."
KEY_NAMES = {Sender.Kind.SES: "secret access key", Sender.Kind.POSTMARK: "server token"}
# The email service settings kept in Sender.esp_options, as the errors name them.
OPTION_NAMES = {
    "region": "AWS region",
    "access_key_id": "access key ID",
    "configuration_set": "configuration set",
    "sender_domain": "sending domain",
    "api_url": "API URL",
    "message_stream": "message stream",
}


class SenderForm(forms.ModelForm):
    # Write-only: left empty on edit, the stored password is kept.
    password = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Stored encrypted. Leave empty to keep the current one.",
    )
    # Email services (django-anymail). The key is write-only like the password; the rest
    # lands in Sender.esp_options.
    api_key = forms.CharField(
        required=False,
        label="API key",
        widget=forms.PasswordInput(render_value=False),
        help_text="Postmark: the server token. Amazon SES: the secret access key. "
        "Stored encrypted. Leave empty to keep the current one.",
    )
    region = forms.CharField(
        required=False, max_length=30, label="AWS region", help_text="Amazon SES: eu-west-1, …"
    )
    access_key_id = forms.CharField(
        required=False, max_length=128, label="AWS access key ID", help_text="Amazon SES."
    )
    configuration_set = forms.CharField(
        required=False,
        max_length=64,
        label="SES configuration set",
        help_text="Amazon SES, optional: the set that publishes delivery events.",
    )
    sender_domain = forms.CharField(
        required=False,
        max_length=253,
        label="Sending domain",
        help_text="Mailgun: the domain as set up in Mailgun (mg.example.com).",
    )
    api_url = forms.CharField(
        required=False,
        max_length=200,
        label="API URL",
        help_text="Mailgun and SendGrid, EU accounts only: https://api.eu.mailgun.net/v3 or "
        "https://api.eu.sendgrid.com/v3. Leave empty otherwise.",
    )
    message_stream = forms.CharField(
        required=False,
        max_length=100,
        label="Message stream",
        help_text="Postmark, optional: empty is “outbound”; campaigns belong in a broadcast "
        "stream.",
    )

    class Meta:
        model = Sender
        widgets = {"warmup_started_on": forms.DateInput(attrs={"type": "date"})}
        labels = {"pool_size": "Connections per worker"}
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
            "pool_size",
            "per_second",
            "per_minute",
            "per_hour",
            "per_day",
            "warmup_started_on",
            "warmup_first_day",
            "warmup_growth_percent",
            "on_unknown",
        ]
        help_texts = {
            "from_domains": "Other domains this sender may send from, comma-separated.",
            "per_hour": "A new domain warming up might start at 35 an hour.",
            "warmup_first_day": "Messages allowed on the first day, e.g. 50.",
            "warmup_growth_percent": "How much the daily limit grows each day, e.g. 50 (%).",
            "on_unknown": "After a crash, messages in flight have an unknown fate.",
            "timeout": "Seconds to wait for the relay or the service's API.",
            "pool_size": "SMTP: connections each worker keeps open to the relay, sending side "
            "by side (1 to 32). Lower it if the relay limits connections per client.",
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["warmup_growth_percent"].required = False  # 50 when left empty
        self.fields["pool_size"].required = False  # the model's default when left empty
        for name, value in (self.instance.esp_options or {}).items():
            if name in OPTION_NAMES:
                self.fields[name].initial = value

    def clean_name(self) -> str:
        return one_line(self.cleaned_data["name"])

    def clean_from_name(self) -> str:
        return one_line(self.cleaned_data["from_name"])

    def clean_from_email(self) -> str:
        try:
            return normalise_sender_email(self.cleaned_data["from_email"])
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

    def clean_region(self) -> str:
        region = self.cleaned_data["region"].strip().lower()
        if region and not AWS_REGION.match(region):
            raise forms.ValidationError(f"{region!r} is not an AWS region such as eu-west-1.")
        return region

    def clean_access_key_id(self) -> str:
        key_id = self.cleaned_data["access_key_id"].strip()
        if key_id and not AWS_KEY_ID.match(key_id):
            raise forms.ValidationError("An access key ID is capitals and digits (AKIA…).")
        return key_id

    def clean_sender_domain(self) -> str:
        domain = self.cleaned_data["sender_domain"].strip().lower()
        if domain:
            try:
                normalise_email(f"x@{domain}")
            except InvalidEmail:
                raise forms.ValidationError(f"{domain!r} is not a domain name.") from None
        return domain

    def clean_api_url(self) -> str:
        url = self.cleaned_data["api_url"].strip()
        if url:
            try:
                URLValidator(schemes=["https"])(url)
            except forms.ValidationError:
                raise forms.ValidationError("The API URL must start with https://.") from None
        return url

    def clean_configuration_set(self) -> str:
        return one_line(self.cleaned_data["configuration_set"])

    def clean_message_stream(self) -> str:
        return one_line(self.cleaned_data["message_stream"])

    def clean_pool_size(self) -> int:
        value = self.cleaned_data.get("pool_size")
        return Sender._meta.get_field("pool_size").default if value is None else value

    def clean_warmup_growth_percent(self) -> int:
        value = self.cleaned_data.get("warmup_growth_percent")
        return 50 if value is None else value

    def clean(self):
        cleaned = super().clean()
        if bool(cleaned.get("warmup_started_on")) != bool(cleaned.get("warmup_first_day")):
            self.add_error(
                "warmup_first_day", "A warm-up needs both its start date and the first day's limit."
            )
        kind = cleaned.get("kind")
        if kind == Sender.Kind.SMTP and not cleaned.get("host"):
            self.add_error("host", "An SMTP sender needs the relay's host name.")
        if kind in ESPS:
            esp = ESPS[kind]
            # A key stored for another service is no key for this one.
            has_key = self.instance.api_key_encrypted and self.instance.kind == kind
            if not cleaned.get("api_key") and not has_key:
                key_name = KEY_NAMES.get(kind, "API key")
                self.add_error("api_key", f"{esp.name} needs the {key_name}.")
            for name in esp.required:
                if not cleaned.get(name) and name not in self.errors:
                    self.add_error(name, f"{esp.name} needs the {OPTION_NAMES[name]}.")
        return cleaned

    def save(self, commit: bool = True) -> Sender:
        sender = super().save(commit=False)
        if self.cleaned_data.get("password"):
            sender.password = self.cleaned_data["password"]
        esp = ESPS.get(sender.kind)
        if esp is None:
            sender.api_key_encrypted, sender.esp_options = "", {}
        else:
            names = esp.required + esp.optional
            sender.esp_options = {n: self.cleaned_data[n] for n in names if self.cleaned_data[n]}
            if self.cleaned_data.get("api_key"):
                sender.api_key = self.cleaned_data["api_key"].strip()
        if commit:
            sender.save()
        return sender


class TestEmailForm(forms.Form):
    to = forms.CharField(max_length=254, label="Send a test email to")
