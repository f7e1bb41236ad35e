from __future__ import annotations

from django.test import SimpleTestCase, override_settings

from postroom.ops.checks import check_debug, check_site_url, check_system_mail


class SystemChecksTestCase(SimpleTestCase):
    @override_settings(SITE_URL="mail.example.com")
    def test_it_flags_a_relative_site_url(self) -> None:
        self.assertEqual([m.id for m in check_site_url(None)], ["postroom.E001"])

    @override_settings(SITE_URL="https://mail.example.com")
    def test_it_accepts_an_absolute_site_url(self) -> None:
        self.assertEqual(check_site_url(None), [])

    @override_settings(SMTP_URL="")
    def test_it_warns_without_smtp(self) -> None:
        self.assertEqual([m.id for m in check_system_mail(None)], ["postroom.W001"])

    @override_settings(DEBUG=True)
    def test_it_warns_about_debug(self) -> None:
        self.assertEqual([m.id for m in check_debug(None)], ["postroom.W002"])
