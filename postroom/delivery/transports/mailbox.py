"""The built-in Mailbox: keeps every message in the database for the dashboard inbox."""

from __future__ import annotations

from postroom.delivery.models import MailboxMessage
from postroom.delivery.transports.base import SENT, Outcome, Parcel, Transport


class MailboxTransport(Transport):
    def send(self, parcel: Parcel) -> Outcome:
        message = parcel.message
        copy, _ = MailboxMessage.objects.update_or_create(
            message=message, defaults={"project_id": message.project_id, "raw": parcel.raw}
        )
        return Outcome(SENT, "250 Kept in the Postroom mailbox", provider_id=str(copy.code))

    def test_connection(self) -> list[str]:
        return ["The Mailbox keeps messages in Postroom: there is nothing to connect to."]
