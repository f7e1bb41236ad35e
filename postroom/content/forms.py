from __future__ import annotations

from django import forms

from postroom.content.actions import check_content
from postroom.content.models import Format, Template
from postroom.content.render import SLOT, Source
from postroom.content.sandbox import TemplateProblem
from postroom.lib.emails import one_line

SAMPLE_BODY = (
    "# A heading\n\nThe message written in a campaign goes here, in place of "
    "`{{ content }}`.\n\n[A link](https://example.com)"
)


class TemplateForm(forms.ModelForm):
    class Meta:
        model = Template
        fields = ["name", "format", "source", "text"]
        widgets = {
            "source": forms.Textarea(attrs={"rows": 18, "spellcheck": "false"}),
            "text": forms.Textarea(attrs={"rows": 6}),
        }
        labels = {"source": "Template", "text": "Plain-text version"}
        help_texts = {
            "source": "Put {{ content }} where a campaign's message goes to make this a layout. "
            "Personalise with {{ contact.first_name | default('there') }}, "
            "{{ contact.data.city }}, {{ project.name }}.",
            "text": "Leave empty to make it from the HTML.",
        }

    def __init__(self, *args, project, **kwargs):
        super().__init__(*args, **kwargs)
        self.project = project

    def clean_name(self) -> str:
        return one_line(self.cleaned_data["name"])

    def clean(self):
        cleaned = super().clean()
        if "source" in cleaned and "format" in cleaned:
            try:
                check_content(self.project, source_of(cleaned))
            except TemplateProblem as e:
                self.add_error("text" if e.part == "Text" else "source", str(e))
        return cleaned


def source_of(fields: dict) -> Source:
    """A template as its own message; a layout with a sample body in its slot."""
    source, format = fields.get("source", ""), fields.get("format", Format.HTML)
    if SLOT.search(source) and format in (Format.HTML, Format.MJML):
        return Source(
            body=SAMPLE_BODY, layout=source, layout_format=format, text=fields.get("text", "")
        )
    return Source(body=source, format=format, text=fields.get("text", ""))
