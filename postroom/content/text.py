"""The plain-text part, made from the HTML once per email, in document order.

Why not inscriptis: it lays a table out as a whole and moves whatever stands between its rows
to the top, which tears a `{% for %}` around table rows away from its rows (the text is made
from the HTML *template*, personalisation tags in place, not per recipient: converting each
recipient's HTML would cost ~4 ms a message). A streaming pass over the stdlib's HTMLParser
keeps everything where it was: rows become lines, cells are spaced, links keep their
address, lists get bullets, and what is hidden (display:none, the preheader) is left out.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser


def words(text: str) -> set[str]:
    return set(text.split())


SKIPPED = {"head", "style", "script", "title", "template"}
BLOCKS = words(
    "address article aside blockquote center dd div dl dt footer form header main nav "
    "section table tbody thead tfoot tr"
)
PARAGRAPHS = {"p", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "pre", "hr", "table"}
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}
HIDDEN = re.compile(r"display\s*:\s*none", re.IGNORECASE)


class TextMaker(HTMLParser):
    def __init__(self, link_token: re.Pattern | None = None) -> None:
        super().__init__(convert_charrefs=True)
        # A template's href may be a token standing for a link made per recipient (tracked).
        self.link_token = link_token
        self.out: list[str] = []
        self.skip_depth = 0  # inside something hidden: how many open tags deep
        self.pre = 0
        self.links: list[str | None] = []
        self.lists: list[list[int]] = []  # per open list: [is_ordered, next number]
        self.cells = 0  # cells written in the current row

    def newline(self, blank: bool = False) -> None:
        """End the line (and leave a blank one): at most one blank line in a row."""
        tail = "".join(self.out[-3:])
        have = len(tail) - len(tail.rstrip("\n")) if self.out else 2
        if (2 if blank else 1) > have:
            self.out.append("\n" * ((2 if blank else 1) - have))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if self.skip_depth:
            self.skip_depth += tag not in VOID
            return
        if tag in SKIPPED or HIDDEN.search(a.get("style") or ""):
            self.skip_depth = 0 if tag in VOID else 1
            return
        nested_list = tag in ("ul", "ol") and self.lists
        if tag in PARAGRAPHS and not nested_list:
            self.newline(blank=True)
        elif tag in BLOCKS or tag == "li" or nested_list:
            self.newline()
        if tag == "br":
            self.newline()
        elif tag == "hr":
            self.out.append("----------\n")
        elif tag == "pre":
            self.pre += 1
        elif tag in ("td", "th"):
            if self.cells:
                self.trim()
                self.out.append("  ")
            self.cells += 1
        elif tag == "tr":
            self.cells = 0
        elif tag in ("ul", "ol"):
            self.lists.append([tag == "ol", 1])
        elif tag == "li":
            ordered, n = self.lists[-1] if self.lists else (False, 1)
            if ordered:
                self.lists[-1][1] += 1
            self.out.append("  " * max(0, len(self.lists) - 1) + (f"{n}. " if ordered else "- "))
        elif tag == "a":
            self.links.append(a.get("href"))
            self.link_start = len(self.out)
        elif tag == "img" and a.get("alt"):
            self.out.append(a["alt"])

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if self.skip_depth:
            self.skip_depth -= 1
            return
        if tag == "a" and self.links:
            href = self.links.pop()
            label = "".join(self.out[self.link_start :]).strip()
            token = self.link_token and self.link_token.fullmatch(href or "")
            if href and (token or re.match(r"(?i)https?:|mailto:", href)):
                shown = href[7:] if href.lower().startswith("mailto:") else href
                if shown != label:
                    self.out.append(f" ({shown})" if label else shown)
        elif tag == "pre":
            self.pre = max(0, self.pre - 1)
        elif tag in ("ul", "ol") and self.lists:
            self.lists.pop()
        if tag in PARAGRAPHS and not (tag in ("ul", "ol") and self.lists):
            self.newline(blank=True)
        elif tag in BLOCKS or tag == "li":
            self.newline()

    def trim(self) -> None:
        """Drop the spaces written last (before a cell separator)."""
        while self.out and not self.out[-1].strip(" "):
            self.out.pop()
        if self.out:
            self.out[-1] = self.out[-1].rstrip(" ")

    def handle_data(self, data: str) -> None:
        if self.skip_depth:
            return
        if self.pre:
            self.out.append(data)
            return
        text = re.sub(r"\s+", " ", data)
        if not self.out or self.out[-1].endswith(("\n", " ")):
            text = text.lstrip(" ")
        if text:
            self.out.append(text)


def html_to_text(html: str, link_token: re.Pattern | None = None) -> str:
    maker = TextMaker(link_token)
    maker.feed(html)
    maker.close()
    lines = [line.rstrip() for line in "".join(maker.out).splitlines()]
    # A line's first word may follow a space the HTML had before it; list nesting keeps its
    # two-space indent.
    text = "\n".join(line if line.startswith("  ") else line.lstrip(" ") for line in lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"
