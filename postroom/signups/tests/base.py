"""What the signup tests share: a form of alice's project, posting to it, the mail it sends."""

from __future__ import annotations

import re

from postroom.accounts.models import Project
from postroom.delivery.models import Message
from postroom.signups.models import SignupForm
from postroom.test import BaseTestCase

LINK = re.compile(r"http://\S+/f/confirm/[\w-]+")


class SignupTestCase(BaseTestCase):
    def make_form(self, project: Project | None = None, **fields) -> SignupForm:
        fields = {"name": "Newsletter", "tags": ["newsletter"], **fields}
        return SignupForm.objects.create(project=project or self.project, **fields)

    def post_form(self, form: SignupForm, data: dict, **headers):
        """A post as the embed snippet makes it: from another site, with no CSRF token."""
        return self.client.post(f"/f/{form.code}", data, **headers)

    def confirmation(self, email: str = "ann@example.com") -> Message:
        return Message.objects.select_related("email").get(to_email=email)

    def link(self, email: str = "ann@example.com") -> str:
        """The confirmation link in the mail to `email`, as a path on this site."""
        found = LINK.findall(self.confirmation(email).email.text)
        self.assertEqual(len(found), 1, self.confirmation(email).email.text)
        return "/" + found[0].split("/", 3)[3]
