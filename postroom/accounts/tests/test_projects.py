from __future__ import annotations

from postroom.accounts.models import ApiKey, Membership, Project, Role
from postroom.test import BaseTestCase


class ProjectsTestCase(BaseTestCase):
    def test_it_creates_a_project_with_an_owner_and_a_key(self) -> None:
        self.login()
        r = self.client.post("/projects/", {"name": "Newsletter"})
        project = Project.objects.get(name="Newsletter")
        self.assertRedirects(r, f"/p/{project.code}/settings/", fetch_redirect_response=False)
        self.assertEqual(Membership.objects.get(project=project, user=self.alice).role, Role.OWNER)
        self.assertEqual(ApiKey.objects.filter(project=project).count(), 1)
        self.assertTrue(project.public_key.startswith("pk_"))

    def test_a_user_without_projects_is_asked_to_create_one(self) -> None:
        Membership.objects.filter(user=self.bob).delete()
        self.login(self.bob)
        self.assertRedirects(self.client.get("/"), "/projects/")
        self.assertContains(self.client.get("/projects/"), "You are not in any project yet")

    def test_it_lists_only_the_users_projects(self) -> None:
        self.login(self.charlie)
        r = self.client.get("/projects/")
        self.assertContains(r, "Charlie&#x27;s")
        self.assertNotContains(r, "Alice&#x27;s project")

    def test_it_renames_a_project_on_one_line(self) -> None:
        self.login()
        self.client.post(self.url("settings/rename/"), {"name": "New\r\nname"})
        self.project.refresh_from_db()
        self.assertEqual(self.project.name, "New name")

    def test_it_keeps_a_time_zone_and_refuses_an_unknown_one(self) -> None:
        self.login()
        self.client.post(self.url("settings/rename/"), {"name": "P", "time_zone": "Asia/Tokyo"})
        self.project.refresh_from_db()
        self.assertEqual(self.project.time_zone, "Asia/Tokyo")
        r = self.client.post(
            self.url("settings/rename/"), {"name": "P", "time_zone": "Mars/Olympus"}, follow=True
        )
        self.assertContains(r, "time_zone: Choose a time zone such as Europe/Paris.")
        self.project.refresh_from_db()
        self.assertEqual(self.project.time_zone, "Asia/Tokyo")

    def test_the_settings_page_renders_for_members(self) -> None:
        self.login(self.bob)
        r = self.client.get(self.url("settings/"))
        self.assertContains(r, self.project.public_key)
        self.assertNotContains(r, "Create secret key")
