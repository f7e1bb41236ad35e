from __future__ import annotations

from django import forms

from postroom.contacts.models import FieldDefinition, FieldType, Status


class ContactForm(forms.Form):
    """Email, names, status, tags, plus one field per custom field definition."""

    email = forms.CharField(max_length=254)
    first_name = forms.CharField(max_length=100, required=False)
    last_name = forms.CharField(max_length=100, required=False)
    status = forms.ChoiceField(choices=Status.choices, initial=Status.SUBSCRIBED)
    tags = forms.CharField(required=False, help_text="Comma-separated, e.g. customer, beta")

    def __init__(self, *args, definitions: list[FieldDefinition] = (), **kwargs):
        super().__init__(*args, **kwargs)
        self.definitions = list(definitions)
        for d in self.definitions:
            self.fields[f"data__{d.key}"] = self.field_for(d)

    @staticmethod
    def field_for(d: FieldDefinition) -> forms.Field:
        label = f"{d.label} ({d.key})" if d.label != d.key else d.key
        if d.type == FieldType.NUMBER:
            return forms.CharField(
                label=label, required=False, widget=forms.TextInput(attrs={"inputmode": "decimal"})
            )
        if d.type == FieldType.DATE:
            return forms.CharField(
                label=label, required=False, widget=forms.DateInput(attrs={"type": "date"})
            )
        if d.type == FieldType.BOOLEAN:
            return forms.ChoiceField(
                label=label, required=False, choices=[("", "—"), ("yes", "Yes"), ("no", "No")]
            )
        return forms.CharField(label=label, required=False, max_length=2000)

    def data_values(self) -> dict:
        return {d.key: self.cleaned_data.get(f"data__{d.key}") for d in self.definitions}

    def tag_names(self) -> list[str]:
        return [t.strip() for t in self.cleaned_data.get("tags", "").split(",") if t.strip()]

    @staticmethod
    def initial_for(contact) -> dict:
        initial = {
            "email": contact.email,
            "first_name": contact.first_name,
            "last_name": contact.last_name,
            "status": contact.status,
            "tags": ", ".join(t.name for t in contact.tags.all()),
        }
        for key, value in contact.data.items():
            if isinstance(value, bool):
                value = "yes" if value else "no"
            initial[f"data__{key}"] = value
        return initial


class FieldDefinitionForm(forms.Form):
    key = forms.SlugField(max_length=64, help_text="Lower-case letters, digits and _, e.g. plan")
    label = forms.CharField(max_length=100, required=False)
    type = forms.ChoiceField(choices=FieldType.choices)


class SuppressionForm(forms.Form):
    email = forms.CharField(max_length=254)
    note = forms.CharField(max_length=200, required=False)


class SegmentForm(forms.Form):
    name = forms.CharField(max_length=100)
    rules = forms.CharField(widget=forms.HiddenInput)
