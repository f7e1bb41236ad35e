from __future__ import annotations

from postroom.accounts.models import ApiKey, hash_key
from postroom.test import BaseTestCase


class KeysTestCase(BaseTestCase):
    def test_it_stores_secret_keys_hashed(self) -> None:
        key = ApiKey.objects.get(project=self.project)
        self.assertEqual(key.key_hash, hash_key(self.secret_key))
        self.assertTrue(self.secret_key.startswith("sk_"))
        for field in ApiKey._meta.concrete_fields:
            value = str(getattr(key, field.attname))
            self.assertNotIn(self.secret_key, value, field.name)
            self.assertNotIn(self.secret_key[3:], value, field.name)

    def test_it_shows_a_new_key_once(self) -> None:
        self.login()
        r = self.client.post(self.url("settings/keys/"), {"name": "Production"})
        self.assertRedirects(r, self.url("settings/"), fetch_redirect_response=False)
        page = self.client.get(self.url("settings/")).content.decode()
        key = ApiKey.objects.get(project=self.project, name="Production")
        raw = page.split('id="new-secret-key">')[1].split("<")[0]
        self.assertEqual(hash_key(raw), key.key_hash)
        self.assertNotIn(raw, self.client.get(self.url("settings/")).content.decode())
        # The new key works.
        self.assertEqual(self.api("GET", "project", key=raw).status_code, 200)

    def test_it_revokes_a_key(self) -> None:
        self.login()
        key = ApiKey.objects.get(project=self.project)
        self.client.post(self.url(f"settings/keys/{key.code}/revoke/"))
        key.refresh_from_db()
        self.assertIsNotNone(key.revoked_at)
        self.assertEqual(self.api("GET", "project").status_code, 401)

    def test_members_cannot_manage_keys(self) -> None:
        self.login(self.bob)
        self.assertEqual(
            self.client.post(self.url("settings/keys/"), {"name": "x"}).status_code, 403
        )
        self.assertFalse(ApiKey.objects.filter(name="x").exists())

    def test_it_rotates_the_public_key(self) -> None:
        self.login()
        old = self.project.public_key
        self.client.post(self.url("settings/public-key/rotate/"))
        self.project.refresh_from_db()
        self.assertNotEqual(self.project.public_key, old)
        self.assertTrue(self.project.public_key.startswith("pk_"))

    def test_a_new_key_is_shown_only_on_its_own_projects_page(self) -> None:
        self.login()
        from postroom.accounts.models import Membership, Role

        Membership.objects.create(project=self.charlies_project, user=self.alice, role=Role.ADMIN)
        self.client.post(self.url("settings/keys/"), {"name": "Mine"})
        other = self.client.get(self.url("settings/", project=self.charlies_project))
        self.assertNotContains(other, 'id="new-secret-key"')
        self.assertContains(self.client.get(self.url("settings/")), 'id="new-secret-key"')
