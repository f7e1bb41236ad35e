from __future__ import annotations

import datetime as dt
import re
import zoneinfo

from django import forms
from django.conf import settings

from postroom.campaigns.actions import draft_source
from postroom.campaigns.models import Campaign
from postroom.contacts.models import Segment
from postroom.content.actions import check_content
from postroom.content.models import Template
from postroom.content.sandbox import TemplateProblem
from postroom.delivery.actions import DeliveryError, check_from
from postroom.delivery.models import Sender
from postroom.lib.emails import InvalidEmail, normalise_email, normalise_sender_email, one_line


class CampaignForm(forms.ModelForm):
    tags_text = forms.CharField(
        label="Tags", required=False, help_text="Comma-separated, for the tags audience."
    )

    class Meta:
        model = Campaign
        fields = [
            "name",
            "subject",
            "preheader",
            "sender",
            "from_email",
            "from_name",
            "reply_to",
            "audience",
            "segment",
            "body_format",
            "body",
            "layout",
            "text_body",
            "track_links",
            "track_opens",
        ]
        widgets = {
            "body": forms.Textarea(attrs={"rows": 14}),
            "text_body": forms.Textarea(attrs={"rows": 6}),
        }
        labels = {"text_body": "Plain-text version"}
        help_texts = {
            "subject": "May be personalised: {{ contact.first_name | default('there') }}",
            "body": "Personalise with {{ contact.first_name }}, {{ contact.data.city }}, "
            "{% if … %}…{% endif %}. A missing value is left empty.",
            "layout": "A template with a {{ content }} slot that this body goes in.",
            "text_body": "Leave empty to make it from the HTML.",
            "track_links": "Clicks are counted through a signed redirect. Leave one link out "
            'with <a href="…" data-no-track>.',
            "track_opens": "A 1-pixel image counts opens (mail clients that block images "
            "are not counted).",
        }

    def __init__(self, *args, project, **kwargs):
        super().__init__(*args, **kwargs)
        self.project = project
        self.fields["sender"].queryset = Sender.objects.filter(project=project)
        self.fields["segment"].queryset = Segment.objects.filter(project=project)
        self.fields["segment"].required = False
        self.fields["layout"].queryset = Template.objects.filter(project=project)
        self.fields["layout"].required = False
        if self.instance.pk:
            self.fields["tags_text"].initial = ", ".join(self.instance.tags)

    def clean_subject(self) -> str:
        return one_line(self.cleaned_data["subject"])

    def clean_from_name(self) -> str:
        return one_line(self.cleaned_data["from_name"])

    def clean_reply_to(self) -> str:
        value = self.cleaned_data["reply_to"].strip()
        if not value:
            return ""
        try:
            return normalise_sender_email(value)
        except InvalidEmail as e:
            raise forms.ValidationError(str(e)) from None

    def clean(self):
        cleaned = super().clean()
        sender = cleaned.get("sender")
        if sender and cleaned.get("from_email"):
            try:
                cleaned["from_email"] = check_from(sender, cleaned["from_email"])
            except DeliveryError as e:
                self.add_error("from_email", e.message)
        audience = cleaned.get("audience")
        if audience == Campaign.Audience.SEGMENT and not cleaned.get("segment"):
            self.add_error("segment", "Choose the segment to send to.")
        tags = [t.strip() for t in cleaned.get("tags_text", "").split(",") if t.strip()]
        if audience == Campaign.Audience.TAGS and not tags:
            self.add_error("tags_text", "Name at least one tag.")
        cleaned["tags"] = tags
        self.check_content(cleaned)
        return cleaned

    def check_content(self, cleaned: dict) -> None:
        """Syntax errors with part, line and column, on the field they are in."""
        layout = cleaned.get("layout")
        if layout is not None and not layout.is_layout:
            self.add_error("layout", f"“{layout.name}” has no {{{{ content }}}} slot.")
            return
        if self.errors or "body" not in cleaned:
            return
        try:
            check_content(self.project, draft_source(cleaned, layout))
        except TemplateProblem as e:
            field = {"Subject": "subject", "Text": "text_body", "Layout": "layout"}
            self.add_error(field.get(e.part, "body"), str(e))

    @classmethod
    def saved_fields(cls) -> list[str]:
        """What save() sets on the campaign (campaigns.actions.save_edits writes these)."""
        return [*cls.Meta.fields, "tags"]

    def save(self, commit: bool = True) -> Campaign:
        campaign = super().save(commit=False)
        campaign.project = self.project
        campaign.tags = self.cleaned_data["tags"]
        if commit:
            campaign.save()
        return campaign


def time_zones() -> list[tuple[str, str]]:
    return [(z, z) for z in sorted(zoneinfo.available_timezones())]


class ScheduleForm(forms.Form):
    when = forms.DateTimeField(
        label="Send at", widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )
    time_zone = forms.ChoiceField(choices=time_zones, initial=settings.TIME_ZONE)

    def clean(self):
        cleaned = super().clean()
        when, zone = cleaned.get("when"), cleaned.get("time_zone")
        if when and zone:
            local = when.replace(tzinfo=None)
            aware = local.replace(tzinfo=zoneinfo.ZoneInfo(zone))
            if aware <= dt.datetime.now(dt.UTC):
                self.add_error("when", "Pick a time in the future, or send now.")
            cleaned["aware"] = aware
        return cleaned


class TestSendForm(forms.Form):
    to = forms.CharField(
        label="Send a test to",
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Up to 20 addresses, separated by commas or new lines. Each is personalised "
        "as that contact (or a reader with no data) would get it.",
    )

    def clean_to(self) -> list[str]:
        addresses = []
        for raw in re.split(r"[,;\s]+", self.cleaned_data["to"]):
            if not raw:
                continue
            try:
                addresses.append(normalise_email(raw))
            except InvalidEmail as e:
                raise forms.ValidationError(f"{raw}: {e}") from None
        if not addresses:
            raise forms.ValidationError("Name at least one address.")
        if len(addresses) > 20:
            raise forms.ValidationError("Up to 20 addresses at a time.")
        return list(dict.fromkeys(addresses))
