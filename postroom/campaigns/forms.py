from __future__ import annotations

import datetime as dt
import zoneinfo

from django import forms
from django.conf import settings

from postroom.campaigns.models import Campaign
from postroom.contacts.models import Segment
from postroom.delivery.actions import DeliveryError, check_from
from postroom.delivery.models import Sender
from postroom.lib.emails import InvalidEmail, normalise_sender_email, one_line


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
        ]
        widgets = {"body": forms.Textarea(attrs={"rows": 14})}

    def __init__(self, *args, project, **kwargs):
        super().__init__(*args, **kwargs)
        self.project = project
        self.fields["sender"].queryset = Sender.objects.filter(project=project)
        self.fields["segment"].queryset = Segment.objects.filter(project=project)
        self.fields["segment"].required = False
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
        return cleaned

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
