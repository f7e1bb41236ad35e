"""postroom.lib.csvsniff: encoding, delimiter and header guessed from a file's first bytes."""

from __future__ import annotations

import codecs

from django.test import SimpleTestCase

from postroom.imports.columns import is_known_header
from postroom.lib.csvsniff import (
    SAMPLE_BYTES,
    decode_sample,
    detect_delimiter,
    detect_encoding,
    detect_header,
    sample_rows,
    sniff,
)

TEXT = "email,first_name\r\nann@example.com,Zoë\r\nbob@example.org,Jürgen\r\n"


class DetectEncodingTest(SimpleTestCase):
    def test_it_reads_a_utf8_bom(self) -> None:
        self.assertEqual(detect_encoding(codecs.BOM_UTF8 + TEXT.encode()), "utf-8-sig")

    def test_it_reads_a_utf16_little_endian_bom(self) -> None:
        sample = codecs.BOM_UTF16_LE + TEXT.encode("utf-16-le")
        self.assertEqual(detect_encoding(sample), "utf-16")
        self.assertEqual(sample.decode("utf-16"), TEXT)

    def test_it_reads_a_utf16_big_endian_bom(self) -> None:
        sample = codecs.BOM_UTF16_BE + TEXT.encode("utf-16-be")
        self.assertEqual(detect_encoding(sample), "utf-16")
        self.assertEqual(sample.decode("utf-16"), TEXT)

    def test_it_recognises_utf16_without_a_bom(self) -> None:
        self.assertEqual(detect_encoding(TEXT.encode("utf-16-le")), "utf-16-le")
        self.assertEqual(detect_encoding(TEXT.encode("utf-16-be")), "utf-16-be")

    def test_it_takes_plain_ascii_for_utf8(self) -> None:
        self.assertEqual(detect_encoding(b"email\nann@example.com\n"), "utf-8")

    def test_it_prefers_utf8_when_the_bytes_decode_as_utf8(self) -> None:
        # "Zoë" in UTF-8 is also valid cp1252 ("ZoÃ«"): UTF-8 must win.
        self.assertEqual(detect_encoding(TEXT.encode("utf-8")), "utf-8")

    def test_it_falls_back_to_cp1252(self) -> None:
        sample = "email;Beitrag\r\nanna@example.com;15,00 €\r\nmax@example.org;Größe\r\n"
        self.assertEqual(detect_encoding(sample.encode("cp1252")), "cp1252")

    def test_it_reads_bytes_undefined_in_cp1252_as_latin1(self) -> None:
        for byte in (0x81, 0x8D, 0x8F, 0x90, 0x9D):
            with self.subTest(hex(byte)):
                sample = b"email,name\nann@example.com,Jos\xe9 " + bytes([byte]) + b"\n"
                self.assertEqual(detect_encoding(sample), "latin-1")

    def test_a_sample_cut_inside_a_multibyte_character_is_still_utf8(self) -> None:
        line = "ann@example.com,Jürgen\n".encode()
        # End the sample on the first byte of "ü" (0xC3), as a 64 KB read may.
        lines = line * ((SAMPLE_BYTES - 40) // len(line))
        last = b"bob@example.org,J" + b"o" * (SAMPLE_BYTES - len(lines) - 18) + b"\xc3"
        sample = lines + last
        self.assertEqual(len(sample), SAMPLE_BYTES)
        self.assertEqual(sample.decode("utf-8", "replace")[-1], "\ufffd")
        self.assertEqual(detect_encoding(sample), "utf-8")
        self.assertEqual(sniff(sample).encoding, "utf-8")

    def test_a_short_cp1252_file_ending_in_an_accented_letter_is_cp1252(self) -> None:
        # The whole file is the sample: its last byte (é, 0xE9) is no cut-off UTF-8 lead byte.
        sample = "email,name\nann@example.com,José".encode("cp1252")
        self.assertEqual(sniff(sample).encoding, "cp1252")


class DecodeSampleTest(SimpleTestCase):
    def test_a_full_sample_is_cut_at_its_last_complete_line(self) -> None:
        line = b"ann@example.com,Ann\n"
        sample = (line * (SAMPLE_BYTES // len(line) + 1))[:SAMPLE_BYTES]
        text = decode_sample(sample, "utf-8")
        self.assertTrue(text.endswith("\n"))
        self.assertEqual(set(text.splitlines()), {"ann@example.com,Ann"})

    def test_a_short_sample_is_the_whole_file(self) -> None:
        self.assertEqual(decode_sample(b"a@example.com\nb@example.com", "utf-8").count("\n"), 1)


class DetectDelimiterTest(SimpleTestCase):
    def test_it_detects_each_delimiter(self) -> None:
        for delimiter in (",", ";", "\t", "|"):
            with self.subTest(repr(delimiter)):
                rows = [["email", "first_name", "last_name"], ["ann@example.com", "Ann", "Lee"]]
                rows.append(["bob@example.org", "Bob", "Stone"])
                text = "".join(delimiter.join(row) + "\n" for row in rows)
                self.assertEqual(detect_delimiter(text), delimiter)

    def test_semicolons_win_over_commas_inside_the_cells(self) -> None:
        text = (
            "E-Mail;Vorname;Nachname;Beitrag\r\n"
            "anna@example.com;Anna;Lee, Jr.;15,00\r\n"
            "max@example.org;Max;Müller;7,50\r\n"
            "lukas@example.net;Lukas;Groß;1,25\r\n"
        )
        self.assertEqual(detect_delimiter(text), ";")

    def test_quoted_delimiters_do_not_count(self) -> None:
        text = 'email,name\n"ann@example.com","Lee; Ann"\n"bob@example.org","Stone; Bob"\n'
        self.assertEqual(detect_delimiter(text), ",")

    def test_a_ragged_file_still_gets_its_delimiter(self) -> None:
        text = "email|name|tags\nann@example.com|Ann\nbob@example.org|Bob|vip\nc@example.net|C|x\n"
        self.assertEqual(detect_delimiter(text), "|")

    def test_a_one_column_file_gets_a_comma(self) -> None:
        self.assertEqual(detect_delimiter("ann@example.com\nbob@example.org\n\n"), ",")
        self.assertEqual(detect_delimiter("email\nann@example.com\nbob@example.org\n"), ",")

    def test_ties_go_to_the_first_candidate(self) -> None:
        self.assertEqual(detect_delimiter("a@example.com,1;2\nb@example.com,3;4\n"), ",")

    def test_a_broken_quote_is_judged_by_the_rows_before_it(self) -> None:
        text = 'email;name\nann@example.com;Ann\nbob@example.org;"Bob\n'
        self.assertEqual(
            sample_rows(text, ";")[:2], [["email", "name"], ["ann@example.com", "Ann"]]
        )
        self.assertEqual(detect_delimiter(text), ";")


class DetectHeaderTest(SimpleTestCase):
    def test_a_row_of_known_header_names_is_a_header(self) -> None:
        rows = [["E-Mail", "Vorname"], ["not yet an address", "Anna"]]
        self.assertTrue(detect_header(rows, is_known_header))
        self.assertFalse(detect_header(rows))  # no addresses below: nothing to go by

    def test_unknown_names_above_addresses_are_a_header(self) -> None:
        rows = [["Kontakt", "Wohnort"], ["ann@example.com", "Berlin"], ["bob@example.org", "Köln"]]
        self.assertTrue(detect_header(rows))
        self.assertTrue(detect_header(rows, is_known_header))

    def test_a_first_row_with_an_address_is_data(self) -> None:
        rows = [["ann@example.com", "Ann", "Lee"], ["bob@example.org", "Bob", "Stone"]]
        self.assertFalse(detect_header(rows))
        self.assertFalse(detect_header(rows, is_known_header))

    def test_a_first_row_with_an_address_is_data_even_if_a_cell_is_a_header_word(self) -> None:
        # "subscribed" is a spelling of the status header, and here a status value: the row
        # holds an address, so it is a contact, not the names of the columns.
        rows = [
            ["ann@example.com", "Ann", "Lee", "subscribed"],
            ["bob@example.org", "Bob", "Stone", "subscribed"],
        ]
        self.assertFalse(detect_header(rows, is_known_header))

    def test_no_rows_no_header(self) -> None:
        self.assertFalse(detect_header([]))
        self.assertFalse(detect_header([], is_known_header))

    def test_a_one_column_file_with_and_without_a_header(self) -> None:
        self.assertTrue(detect_header([["email"], ["ann@example.com"]], is_known_header))
        self.assertTrue(detect_header([["Adressen"], ["ann@example.com"]]))
        self.assertFalse(detect_header([["ann@example.com"], ["bob@example.org"]]))


class SniffTest(SimpleTestCase):
    def test_it_sniffs_an_excel_german_file(self) -> None:
        text = "E-Mail;Vorname;Beitrag\r\nanna@example.com;Anna;15,00 €\r\nmax@x.org;Max;1,5\r\n"
        sniffed = sniff(text.encode("cp1252"), is_known_header)
        self.assertEqual(
            (sniffed.encoding, sniffed.delimiter, sniffed.has_header), ("cp1252", ";", True)
        )

    def test_it_sniffs_a_utf16_tab_file(self) -> None:
        text = "Email\tPrénom\r\nclaire@example.com\tClaire\r\nli@example.org\t李\r\n"
        sniffed = sniff(codecs.BOM_UTF16_LE + text.encode("utf-16-le"), is_known_header)
        self.assertEqual(
            (sniffed.encoding, sniffed.delimiter, sniffed.has_header), ("utf-16", "\t", True)
        )

    def test_it_sniffs_a_headerless_list_of_addresses(self) -> None:
        sniffed = sniff(b"ann@example.com\nbob@example.org\n", is_known_header)
        self.assertEqual(
            (sniffed.encoding, sniffed.delimiter, sniffed.has_header), ("utf-8", ",", False)
        )
