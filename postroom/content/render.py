"""From what an author writes to what each recipient gets.

Once per email (`compile_email`, a few milliseconds):

1. The personalisation tags ({{ … }}, {% … %}, {# … #}) are set aside as opaque tokens, so
   that Markdown, MJML, the sanitiser and the CSS inliner never see (or mangle) them.
2. The body becomes HTML: Markdown through markdown-it (its raw HTML then sanitised by nh3,
   because markdown-it's CommonMark preset passes `<script>` through), HTML as written, or
   MJML through mrml (includes refused). It goes into its layout's {{ content }} slot.
3. The preheader goes in as hidden text at the top of the body; CSS is inlined with
   css-inline (remote stylesheets never fetched, @media rules kept for phones).
4. The text part is made from that HTML (content.text), unless the author wrote one.
5. The tokens are put back and subject, HTML and text are compiled as sandboxed templates.

Per recipient (`CompiledEmail.render`, tens of microseconds): three sandboxed renders with
plain data (content.sandbox).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from html import unescape
from typing import Any

import css_inline
import mrml
import nh3
from markdown_it import MarkdownIt

from postroom.content.sandbox import (
    TemplateProblem,
    compile_template,
    render,
    render_chunks,
    variables_used,
)
from postroom.content.text import html_to_text, words
from postroom.lib.emails import one_line
from postroom.tracking.links import links_for

MARKDOWN, HTML, MJML, TEXT = "markdown", "html", "mjml", "text"
SLOT = re.compile(r"\{\{-?\s*content\s*-?\}\}")
JINJA_TAG = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)

# What Markdown's HTML may keep: the tags and attributes of a well-made email, style included.
EMAIL_TAGS = words(
    "a abbr b blockquote br caption center code col colgroup dd del div dl dt em font h1 h2 "
    "h3 h4 h5 h6 hr i img ins li ol p pre s small span strike strong sub sup table tbody td "
    "tfoot th thead tr u ul"
)
EMAIL_ATTRIBUTES = {
    "*": {"style", "class", "align", "valign", "width", "height", "bgcolor", "dir", "lang"},
    "a": {"href", "title", "target", "name", "data-no-track"},
    "img": {"src", "alt", "title", "border"},
    "table": {"border", "cellpadding", "cellspacing", "role"},
    "td": {"colspan", "rowspan"},
    "th": {"colspan", "rowspan", "scope"},
    "font": {"color", "face", "size"},
    "ol": {"start", "type"},
}
URL_SCHEMES = {"http", "https", "mailto", "tel"}

MARKDOWN_RENDERER = MarkdownIt("commonmark", {"html": True, "linkify": False}).enable("table")
INLINER = css_inline.CSSInliner(load_remote_stylesheets=False, keep_at_rules=True)
PREHEADER_STYLE = (
    "display:none;font-size:1px;line-height:1px;max-height:0;max-width:0;opacity:0;"
    "overflow:hidden;mso-hide:all"
)


@dataclass(frozen=True)
class Source:
    """What an author wrote: a body (with its format) and optionally a layout around it."""

    body: str
    format: str = MARKDOWN
    layout: str = ""  # HTML or MJML with a {{ content }} slot, or "" for none
    layout_format: str = HTML
    text: str = ""  # the plain-text part as written; "" makes it from the HTML
    preheader: str = ""
    subject: str = ""
    track_links: bool = False  # http(s) links through the signed click redirect
    track_opens: bool = False  # an open pixel at the end of the HTML
    footer: bool = False  # marketing mail: the postal address and the unsubscribe links


@dataclass
class Rendered:
    subject: str
    html: str
    text: str


class Tokens:
    """Personalisation tags set aside behind tokens that no HTML tool alters: an HTML
    comment where a tag stands between elements (so a table's {% for %} stays in place),
    a word inside a tag's attributes and in Markdown text."""

    def __init__(self) -> None:
        self.nonce = secrets.token_hex(4)
        self.tags: list[str] = []
        self.back = re.compile(rf"<!--PR{self.nonce}T(\d+)-->|PR{self.nonce}T(\d+)X")

    def hide(self, source: str, comments: bool) -> str:
        def token(m: re.Match) -> str:
            self.tags.append(m.group(0))
            i = len(self.tags) - 1
            inside_tag = source.rfind("<", 0, m.start()) > source.rfind(">", 0, m.start())
            if comments and not inside_tag and m.group(0).startswith("{%"):
                return f"<!--PR{self.nonce}T{i}-->"
            return f"PR{self.nonce}T{i}X"

        return JINJA_TAG.sub(token, source)

    def add(self, jinja: str) -> str:
        """A tag of our own (a tracked link, the pixel), as a word token."""
        self.tags.append(jinja)
        return f"PR{self.nonce}T{len(self.tags) - 1}X"

    def words(self, html: str) -> str:
        """Comment tokens as words, for tools that drop comments (the text converter)."""
        return re.sub(rf"<!--PR{self.nonce}T(\d+)-->", rf"PR{self.nonce}T\1X", html)

    def restore(self, text: str) -> str:
        return self.back.sub(lambda m: self.tags[int(m.group(1) or m.group(2))], text)


def markdown_to_html(source: str) -> str:
    html = MARKDOWN_RENDERER.render(source)
    return nh3.clean(
        html,
        tags=EMAIL_TAGS,
        attributes=EMAIL_ATTRIBUTES,
        url_schemes=URL_SCHEMES,
        link_rel=None,
        strip_comments=False,
    )


def mjml_to_html(source: str) -> str:
    try:
        options = mrml.ParserOptions(include_loader=mrml.noop_loader())
        return mrml.to_html(source, parser_options=options).content
    except OSError as e:  # mrml's parse errors
        raise TemplateProblem(f"MJML: {e}") from None


def body_html(source: Source, tokens: Tokens) -> str:
    """The body as HTML, in its layout, tokens in place of personalisation tags."""
    if source.format == MJML:
        if source.layout:
            raise TemplateProblem("An MJML body is a whole document: it takes no layout.")
        return mjml_to_html(tokens.hide(source.body, comments=False))
    if source.format == MARKDOWN:
        body = markdown_to_html(tokens.hide(source.body, comments=False))
    else:
        body = tokens.hide(source.body, comments=True)
    if not source.layout:
        return body
    layout = tokens.hide(SLOT.sub("\x00", source.layout, count=1), comments=True)
    if "\x00" not in layout:
        raise TemplateProblem("The layout has no {{ content }} slot for the message.")
    if source.layout_format == MJML:
        return mjml_to_html(layout.replace("\x00", body))
    return layout.replace("\x00", body)


def escape_html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def with_preheader(html: str, preheader: str) -> str:
    if not preheader:
        return html
    hidden = f'<div style="{PREHEADER_STYLE}">{escape_html(one_line(preheader))}</div>'
    body = re.search(r"<body[^>]*>", html, re.IGNORECASE)
    if body is None:
        return hidden + html
    return html[: body.end()] + hidden + html[body.end() :]


def inline_css(html: str) -> str:
    try:
        return INLINER.inline(html)
    except (css_inline.InlineError, ValueError) as e:
        raise TemplateProblem(f"CSS: {e}") from None


@dataclass
class CompiledEmail:
    """Subject, HTML and text as sandboxed templates, ready for each recipient."""

    subject: Any
    html: Any
    text: Any

    links: list[str] = field(default_factory=list)

    def with_links(self, context: dict[str, Any]) -> dict[str, Any]:
        """The context with each tracked link: through the redirect signed for the message
        being sent (`_message`), or as written in a preview."""
        if not self.links:
            return context
        code = context.get("_message")
        made = links_for(code) if code else None
        extra = {f"_link{i}": made.click(url) if made else url for i, url in enumerate(self.links)}
        return {**context, **extra}

    def render(self, context: dict[str, Any]) -> Rendered:
        context = self.with_links(context)
        return Rendered(
            subject=one_line(render(self.subject, context)),
            html=render(self.html, context),
            text=render(self.text, context),
        )

    def render_chunks(self, context: dict[str, Any]) -> tuple[str, list[str], list[str]]:
        """Subject, then HTML and text as chunks (content.sandbox.render_chunks)."""
        context = self.with_links(context)
        return (
            one_line(render(self.subject, context)),
            render_chunks(self.html, context),
            render_chunks(self.text, context),
        )


FOOTER_HTML = (
    '<div style="margin:24px 0 0;padding:16px;border-top:1px solid #e5e5e5;'
    "font-family:Helvetica,Arial,sans-serif;font-size:12px;line-height:18px;color:#777777;"
    'text-align:center">{{ project.name }}{% if project.postal_address %} · '
    "{{ project.postal_address }}{% endif %}<br>"
    '<a href="{{ unsubscribe_url }}" style="color:#777777">Unsubscribe</a> · '
    '<a href="{{ preferences_url }}" style="color:#777777">Email preferences</a></div>'
)
FOOTER_TEXT = (
    "\n\n-- \n{{ project.name }}{% if project.postal_address %}, {{ project.postal_address }}"
    "{% endif %}\nUnsubscribe: {{ unsubscribe_url }}\nPreferences: {{ preferences_url }}\n"
)


@dataclass
class Prepared:
    """An email ready to compile (what an Email keeps): HTML and text templates, and the
    links they track, which each recipient's render fills in as _link0, _link1, …"""

    html: str
    text: str
    links: list[str]


def prepare(source: Source) -> Prepared:
    """The HTML and text templates (personalisation tags in place), once per email. A plain
    text body makes a text-only email. Marketing mail gets a footer with the postal address
    and the unsubscribe links, unless the author placed {{ unsubscribe_url }} themselves."""
    prepared = prepare_body(source)
    # Placed by the author only if a template really reads it (not in a comment or text).
    placed = any(
        "unsubscribe_url" in variables_used(part)
        for part in (source.body, SLOT.sub("", source.layout), source.text)
    )
    if source.footer and not placed:
        prepared.html = before_body_end(prepared.html, FOOTER_HTML) if prepared.html else ""
        prepared.text = prepared.text.rstrip("\n") + FOOTER_TEXT
    return prepared


def prepare_body(source: Source) -> Prepared:
    if source.format == TEXT:
        return Prepared("", source.text or source.body, [])
    tokens = Tokens()
    html = inline_css(with_preheader(body_html(source, tokens), source.preheader))
    links: list[str] = []
    if source.track_links:
        html = track_links(html, tokens, links)
    link_token = re.compile(rf"PR{tokens.nonce}T\d+X")
    text = source.text or tokens.restore(html_to_text(tokens.words(html), link_token))
    if source.track_opens:
        html = before_body_end(html, tokens.add("{{ open_pixel() }}"))
    return Prepared(tokens.restore(html), text, links)


ANCHOR = re.compile(r"<a\b[^>]*>", re.IGNORECASE)
HREF = re.compile(r'\shref="([^"]*)"', re.IGNORECASE)
TRACKABLE = re.compile(r"\s*https?://", re.IGNORECASE)
NO_TRACK = re.compile(r"\sdata-no-track(?:=\"[^\"]*\")?", re.IGNORECASE)


def track_links(html: str, tokens: Tokens, links: list[str]) -> str:
    """Every http(s) link (or one personalised as a whole) through the click redirect,
    unless its <a> says data-no-track. Runs on the serialised HTML after inlining, where
    every attribute is double-quoted. A link known now becomes a variable, _link3, that each
    recipient's render fills in (no call per link: bench/render.py); `links` gets its URL.
    A personalised one goes through the `tracked` filter."""

    def rewrite(m: re.Match) -> str:
        tag = m.group(0)
        if NO_TRACK.search(tag):
            return NO_TRACK.sub("", tag)
        href = HREF.search(tag)
        if href is None:
            return tag
        url = href.group(1)
        template = tokens.restore(url)
        if template == url:  # nothing personalised inside: the target is known now
            if not TRACKABLE.match(unescape(url)):
                return tag
            links.append(unescape(url).strip())
            jinja = "{{ _link" + str(len(links) - 1) + " }}"
        elif url.startswith(f"PR{tokens.nonce}") or TRACKABLE.match(url):
            # Known per recipient only: the filter checks the rendered URL's scheme.
            jinja = "{% filter tracked %}" + template + "{% endfilter %}"
        else:
            return tag
        return tag[: href.start(1)] + tokens.add(jinja) + tag[href.end(1) :]

    return ANCHOR.sub(rewrite, html)


def before_body_end(html: str, snippet: str) -> str:
    end = html.lower().rfind("</body>")
    return html + snippet if end < 0 else html[:end] + snippet + html[end:]


def check(source: Source) -> None:
    """Every part as the author wrote it, so that a syntax error names their line and
    column (not one of the HTML made from it). Raises TemplateProblem."""
    parts = [("Subject", source.subject), ("Body", source.body), ("Text", source.text)]
    if source.layout:
        parts.append(("Layout", SLOT.sub("", source.layout, count=1)))
    for name, text in parts:
        try:
            compile_template(text, html=False)
        except TemplateProblem as e:
            raise e.within(name) from None


def compile_email(source: Source, prepared: Prepared | None = None) -> CompiledEmail:
    """Raises TemplateProblem with the part and the line. `prepared`: prepare(source), when
    the caller made it already."""
    check(source)
    prepared = prepared or prepare(source)
    html, text = prepared.html, prepared.text
    parts = {}
    for name, template, is_html in (
        ("subject", source.subject, False),
        ("HTML", html, True),
        ("text", text, False),
    ):
        try:
            parts[name] = compile_template(template, html=is_html)
        except TemplateProblem as e:
            raise e.within(f"{name} (as made from the source)") from None
    return CompiledEmail(parts["subject"], parts["HTML"], parts["text"], prepared.links)


def compile_prepared(subject: str, html: str, text: str, links: list[str]) -> CompiledEmail:
    """A prepared email (as `prepare` left it and an Email keeps it), compiled again: in
    each worker process, once per Email."""
    return CompiledEmail(
        compile_template(subject, html=False),
        compile_template(html, html=True),
        compile_template(text, html=False),
        list(links),
    )
