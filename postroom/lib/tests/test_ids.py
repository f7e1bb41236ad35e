from __future__ import annotations

import time

from django.test import SimpleTestCase

from postroom.lib.ids import uuid7


class Uuid7TestCase(SimpleTestCase):
    def test_it_is_a_version_7_rfc_uuid(self) -> None:
        value = uuid7()
        self.assertEqual(value.version, 7)
        self.assertEqual(value.variant, "specified in RFC 4122")

    def test_it_carries_the_time_in_milliseconds(self) -> None:
        before = time.time_ns() // 1_000_000
        value = uuid7()
        after = time.time_ns() // 1_000_000
        self.assertTrue(before <= value.int >> 80 <= after)

    def test_later_ones_sort_after_earlier_ones(self) -> None:
        first = uuid7()
        time.sleep(0.002)
        self.assertLess(first, uuid7())
        self.assertEqual(len({uuid7() for _ in range(1000)}), 1000)
