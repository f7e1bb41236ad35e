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
