from __future__ import annotations

from datetime import timedelta as td

from django.core import mail
from django.test import override_settings
from django.utils import timezone

from postroom.campaigns import actions
from postroom.campaigns.models import Campaign
from postroom.campaigns.stalls import check_stalled_campaigns
from postroom.delivery.actions import default_sender
from postroom.delivery.models import Message, Sender
from postroom.delivery.sending import handle_one_send_batch
from postroom.ops.health import check_stalled_campaigns as health_check
from postroom.test import BaseTestCase


@override_settings(CAMPAIGN_STALL_AFTER=600)
class StallTestCase(BaseTestCase):
    def setUp(self) -> None:
        super().setUp()
        for i in range(3):
            self.make_contact(f"c{i}@example.com")
        sender = default_sender(self.project)
        self.campaign = Campaign.objects.create(
            project=self.project,
            name="Big news",
            subject="Hi",
            sender=sender,
            from_email=sender.from_email,
            body="Hello",
        )
        actions.start(self.campaign)
        actions.start_due_campaigns()
        self.campaign.refresh_from_db()

    def age(self, minutes: int) -> None:
        past = timezone.now() - td(minutes=minutes)
        Campaign.objects.filter(pk=self.campaign.pk).update(started_at=past)
        Message.objects.filter(email_id=self.campaign.email_id).update(updated_at=past)

    def test_a_fresh_campaign_is_not_stalled(self) -> None:
        self.assertEqual(check_stalled_campaigns(), 0)

    def test_no_progress_for_too_long_alerts_once_and_shows_everywhere(self) -> None:
        self.age(minutes=11)
        self.assertEqual(check_stalled_campaigns(), 1)
        self.assertEqual(check_stalled_campaigns(), 0)  # one email per stall
        self.assertEqual(len(mail.outbox), 1)
        self.assertEqual(mail.outbox[0].to, ["alice@example.org"])
        self.assertIn("Big news", mail.outbox[0].subject)
        self.assertIn("no worker is sending", mail.outbox[0].body)
        self.assertEqual(health_check().status, "error")
        self.login()
        self.assertContains(self.client.get(self.url("contacts/")), "has stopped making progress")
        # Progress resumes: the stall clears.
        handle_one_send_batch()
        check_stalled_campaigns()
        self.campaign.refresh_from_db()
        self.assertIsNone(self.campaign.stalled_at)
        self.assertEqual(health_check().status, "ok")

    def test_waiting_on_rate_limits_is_not_a_stall(self) -> None:
        Sender.objects.filter(project=self.project).update(per_day=1)
        handle_one_send_batch()  # uses the day's one slot
        self.age(minutes=30)
        Message.objects.filter(state="sent").update(sent_at=timezone.now())
        self.assertEqual(check_stalled_campaigns(), 0)

    def test_a_paused_campaign_is_not_stalled(self) -> None:
        actions.pause(self.campaign)
        self.age(minutes=30)
        self.assertEqual(check_stalled_campaigns(), 0)
