from __future__ import annotations

from postroom.contacts.models import Contact
from postroom.lib.keyset import decode_cursor, encode_cursor, keyset_page
from postroom.test import BaseTestCase


def test_cursors_round_trip_and_garbage_means_first_page() -> None:
    assert decode_cursor(encode_cursor(123456)) == 123456
    for garbage in (None, "", "%%%", "abc", "not base64 at all", "eDEyMw"):  # "x123"
        assert decode_cursor(garbage) is None, garbage


class KeysetPageTestCase(BaseTestCase):
    def test_it_walks_forward_and_back_without_gaps_or_repeats(self) -> None:
        for i in range(7):
            Contact.objects.create(project=self.project, email=f"c{i}@example.com")
        qs = Contact.objects.filter(project=self.project)
        seen, page = [], keyset_page(qs, size=3)
        assert page.prev_cursor is None
        while True:
            seen += [c.email for c in page.items]
            if not page.next_cursor:
                break
            page = keyset_page(qs, after=page.next_cursor, size=3)
        assert seen == [f"c{i}@example.com" for i in range(6, -1, -1)]
        back = keyset_page(qs, before=page.prev_cursor, size=3)
        assert [c.email for c in back.items] == [
            "c3@example.com",
            "c2@example.com",
            "c1@example.com",
        ]
        first = keyset_page(qs, before=back.prev_cursor, size=3)
        assert [c.email for c in first.items][0] == "c6@example.com"

    def test_by_time_it_walks_in_time_order_when_ids_are_not(self) -> None:
        import datetime as dt

        from django.utils import timezone

        from postroom.tracking.models import Event

        base = timezone.now().replace(microsecond=0)
        # Ids in one order, times in another, and two events at the same moment.
        offsets = [5, 1, 3, 3, 0, 4, 2]
        for i, minutes in enumerate(offsets):
            Event.objects.create(
                project=self.project,
                kind=Event.Kind.CUSTOM,
                name=f"e{i}",
                created_at=base + dt.timedelta(minutes=minutes),
            )
        qs = Event.objects.filter(project=self.project)
        expected = [e.name for e in qs.order_by("-created_at", "-id")]
        seen, page = [], keyset_page(qs, size=2, by="created_at")
        pages = [page]
        while True:
            seen += [e.name for e in page.items]
            if not page.next_cursor:
                break
            page = keyset_page(qs, after=page.next_cursor, size=2, by="created_at")
            pages.append(page)
        assert seen == expected
        back = keyset_page(qs, before=pages[-1].prev_cursor, size=2, by="created_at")
        assert [e.name for e in back.items] == [e.name for e in pages[-2].items]
        # A cursor of a list ordered by id alone starts this one from its first page.
        by_id = keyset_page(qs, size=2).next_cursor
        assert keyset_page(qs, after=by_id, size=2, by="created_at").items == pages[0].items
