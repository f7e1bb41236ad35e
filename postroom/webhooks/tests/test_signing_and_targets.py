from __future__ import annotations

from django.test import SimpleTestCase, override_settings

from postroom.webhooks.signing import signature_header, verify
from postroom.webhooks.targets import TargetRefused, check_url

SECRET = "whsec_test"
BODY = b'{"type":"contact.created"}'


class SigningTest(SimpleTestCase):
    def test_a_fresh_signature_of_the_same_body_verifies(self) -> None:
        header = signature_header(SECRET, BODY, at=1_800_000_000)
        self.assertTrue(verify(SECRET, header, BODY, now=1_800_000_100))

    def test_a_changed_body_another_secret_or_an_old_time_do_not(self) -> None:
        header = signature_header(SECRET, BODY, at=1_800_000_000)
        self.assertFalse(verify(SECRET, header, BODY + b" ", now=1_800_000_000))
        self.assertFalse(verify("whsec_other", header, BODY, now=1_800_000_000))
        self.assertFalse(verify(SECRET, header, BODY, now=1_800_000_301))  # a replay, later
        for broken in ("", "t=abc,v1=00", "v1=00", header.replace("v1=", "v0=")):
            self.assertFalse(verify(SECRET, broken, BODY, now=1_800_000_000), broken)


class TargetsTest(SimpleTestCase):
    def test_private_loopback_and_link_local_targets_are_refused(self) -> None:
        for url in (
            "http://127.0.0.1/hook",
            "http://localhost:8000/hook",
            "http://10.1.2.3/hook",
            "http://192.168.0.10/hook",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::1]/hook",
            "http://0.0.0.0/hook",
        ):
            with self.subTest(url), self.assertRaises(TargetRefused):
                check_url(url)

    def test_a_public_address_passes_and_bad_urls_say_why(self) -> None:
        check_url("https://93.184.216.34/hook")
        for url, why in (
            ("ftp://example.com/hook", "http://"),
            ("https://user:pass@93.184.216.34/", "user name"),
            ("https://93.184.216.34:99999/", "port"),
            ("https:///nohost", "host"),
        ):
            with self.subTest(url), self.assertRaisesMessage(TargetRefused, why):
                check_url(url)

    @override_settings(WEBHOOKS_ALLOW_PRIVATE=True)
    def test_an_admin_can_allow_private_targets(self) -> None:
        check_url("http://127.0.0.1:9/hook")


class GuardedConnectionTest(SimpleTestCase):
    def test_a_connection_that_reaches_a_private_address_sends_nothing(self) -> None:
        """As when a name resolved to a public address for the check and to loopback for the
        connection (DNS rebinding): the socket's own peer is checked before the request."""
        from postroom.webhooks.targets import guarded_session
        from postroom.webhooks.tests.receiver import Receiver

        with Receiver() as receiver, guarded_session() as session:
            with self.assertRaises(Exception) as raised:
                session.post(receiver.url, data=b"{}", timeout=3)
            self.assertIn("private, loopback", str(raised.exception))
            self.assertEqual(receiver.received, [])
            with override_settings(WEBHOOKS_ALLOW_PRIVATE=True):
                self.assertEqual(session.post(receiver.url, data=b"{}", timeout=3).status_code, 200)
