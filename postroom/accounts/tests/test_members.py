from __future__ import annotations

from django.core import mail

from postroom.accounts.models import Invitation, Membership, Role, User
from postroom.test import PASSWORD, BaseTestCase


class MembersTestCase(BaseTestCase):
    def test_it_invites_by_email(self) -> None:
        self.login()
        self.client.post(
            self.url("settings/invite/"), {"email": "dana@example.org", "role": "admin"}
        )
        invitation = Invitation.objects.get(email="dana@example.org")
        self.assertEqual(invitation.role, Role.ADMIN)
        self.assertEqual(len(mail.outbox), 1)
        self.assertIn(f"/invite/{invitation.token}/", mail.outbox[0].body)
        self.assertIn("Alice's project", mail.outbox[0].subject)

    def test_a_new_person_accepts_by_creating_an_account(self) -> None:
        invitation = Invitation.objects.create(
            project=self.project, email="dana@example.org", role=Role.MEMBER, token="tok"
        )
        r = self.client.post(
            "/invite/tok/",
            {"email": "dana@example.org", "name": "Dana", "password": "dana's long passphrase"},
        )
        self.assertRedirects(r, self.url(""))
        dana = User.objects.get(email="dana@example.org")
        self.assertTrue(Membership.objects.filter(project=self.project, user=dana).exists())
        invitation.refresh_from_db()
        self.assertIsNotNone(invitation.accepted_at)
        self.assertEqual(self.client.get("/invite/tok/").status_code, 404)

    def test_an_existing_user_accepts_after_logging_in(self) -> None:
        Invitation.objects.create(project=self.project, email="charlie@example.org", token="tok2")
        r = self.client.get("/invite/tok2/")
        self.assertRedirects(r, "/login/?next=/invite/tok2/", fetch_redirect_response=False)
        self.client.post("/login/", {"username": "charlie@example.org", "password": PASSWORD})
        self.client.post("/invite/tok2/")
        self.assertTrue(Membership.objects.filter(project=self.project, user=self.charlie).exists())

    def test_members_cannot_invite(self) -> None:
        self.login(self.bob)
        r = self.client.post(
            self.url("settings/invite/"), {"email": "x@example.org", "role": "member"}
        )
        self.assertEqual(r.status_code, 403)

    def test_admins_cannot_make_owners(self) -> None:
        Membership.objects.filter(user=self.bob).update(role=Role.ADMIN)
        self.login(self.bob)
        owner = Membership.objects.get(project=self.project, user=self.alice)
        self.assertEqual(
            self.client.post(
                self.url(f"settings/members/{owner.id}/role/"), {"role": "member"}
            ).status_code,
            403,
        )
        dana = User.objects.create_user("dana@example.org", PASSWORD)
        m = Membership.objects.create(project=self.project, user=dana)
        self.client.post(self.url(f"settings/members/{m.id}/role/"), {"role": "owner"})
        m.refresh_from_db()
        self.assertEqual(m.role, Role.MEMBER)

    def test_the_last_owner_cannot_leave(self) -> None:
        self.login()
        owner = Membership.objects.get(project=self.project, user=self.alice)
        self.client.post(self.url(f"settings/members/{owner.id}/remove/"))
        self.assertTrue(Membership.objects.filter(id=owner.id).exists())

    def test_a_member_can_leave(self) -> None:
        self.login(self.bob)
        m = Membership.objects.get(project=self.project, user=self.bob)
        r = self.client.post(self.url(f"settings/members/{m.id}/remove/"))
        self.assertRedirects(r, "/", fetch_redirect_response=False)
        self.assertFalse(Membership.objects.filter(id=m.id).exists())


class InvitationBindingTestCase(BaseTestCase):
    def setUp(self) -> None:
        super().setUp()
        Invitation.objects.create(
            project=self.project, email="dana@example.org", role=Role.OWNER, token="own"
        )

    def test_another_account_cannot_accept(self) -> None:
        self.login(self.charlie)
        self.assertContains(
            self.client.get("/invite/own/"), "This invitation is for dana@example.org"
        )
        self.client.post("/invite/own/")
        self.assertFalse(
            Membership.objects.filter(project=self.project, user=self.charlie).exists()
        )

    def test_signing_up_keeps_the_invited_address(self) -> None:
        self.client.post(
            "/invite/own/",
            {"email": "mallory@example.org", "name": "M", "password": "a long passphrase 9"},
        )
        self.assertFalse(User.objects.filter(email="mallory@example.org").exists())
        self.assertTrue(
            Membership.objects.filter(project=self.project, user__email="dana@example.org").exists()
        )

    def test_a_mail_failure_keeps_no_invitation(self) -> None:
        from unittest import mock

        self.login()
        with mock.patch(
            "postroom.accounts.actions.send_mail", side_effect=OSError("connection refused")
        ):
            r = self.client.post(
                self.url("settings/invite/"),
                {"email": "eve@example.org", "role": "member"},
                follow=True,
            )
        self.assertContains(r, "could not be sent")
        self.assertFalse(Invitation.objects.filter(email="eve@example.org").exists())
