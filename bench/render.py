"""Rendering at scale: personalised messages per CPU-second for a realistic newsletter.

    python bench/render.py [--messages N]

A ~20 KB newsletter: an HTML layout with a <style> block (inlined once, @media kept), a
Markdown body with five merge fields (first name with a default, last name, two custom
fields, the project's name), twenty links (tracked, each signed for its recipient), an
open pixel, the unsubscribe footer, paragraphs of text and a preheader. It is
prepared once, as the campaign's start does (content.render.prepare). Then each of N
recipients gets what the send loop builds for them: the sandboxed render of subject, HTML
and text, and the MIME message (delivery.mime.MimeTemplate: headers, quoted-printable
bodies, List-Unsubscribe). Timed with the process's CPU clock, in one thread: messages
per second per core. Then DKIM signing of 2,000 of them, with RSA-2048 and with Ed25519:
its cost per message comes on top. No database, no network.

The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_PER_CORE = 5000

LAYOUT = """<!doctype html><html><head><meta charset="utf-8"><style>
body { margin: 0; padding: 0; background: #f4f4f4; }
.wrap { width: 600px; margin: 0 auto; background: #ffffff; }
h1 { font-family: Helvetica, Arial, sans-serif; font-size: 26px; color: #222222; }
p, li { font-family: Helvetica, Arial, sans-serif; font-size: 16px; line-height: 24px;
        color: #333333; }
a { color: #1a73e8; text-decoration: underline; }
.footer p { font-size: 12px; color: #888888; }
@media (max-width: 600px) { .wrap { width: 100% !important; } h1 { font-size: 22px; } }
</style></head><body><table class="wrap" role="presentation" width="600"><tr><td>
{{ content }}
</td></tr><tr><td class="footer"><p>{{ project.name }} · 1 Garden Lane, Springfield</p>
</td></tr></table></body></html>"""

PARAGRAPH = (
    "This week in the garden: the tomatoes are in, the late varieties need staking, and "
    "our autumn bulb sale starts on Friday. Résumé of the month below, with prices in € "
    "and a few notes from readers. "
)


def newsletter_body(links: int = 20, kb: int = 20) -> str:
    """Markdown: a greeting with merge fields, paragraphs, `links` links, about `kb` KB
    once laid out and inlined."""
    parts = [
        '# Hello {{ contact.first_name | default("there") }} {{ contact.last_name }}!\n',
        "Your plan: **{{ contact.data.plan | default('free') }}**, and the weather in "
        "{{ contact.data.city | default('your town') }} looks fine.\n",
    ]
    for i in range(links):
        parts.append(
            PARAGRAPH + f"[Read part {i + 1}](https://example.com/blog/{i}?utm_source=news)\n"
        )
    while sum(len(p) for p in parts) * 1.45 < kb * 1024:  # inline styles add ~45%
        parts.append(PARAGRAPH + "\n")
    return "\n".join(parts)


def setup() -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "postroom.settings"
    os.environ["POSTROOM_DATA_DIR"] = tempfile.mkdtemp(prefix="postroom-bench-render-")
    os.environ.pop("DATABASE_URL", None)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--messages", type=int, default=20_000)
    args = p.parse_args()
    setup()
    from postroom.content.context import contact_context
    from postroom.content.render import Source, prepare
    from postroom.delivery import dkim
    from postroom.delivery.mime import MimeTemplate
    from postroom.delivery.models import Email, Message
    from postroom.tracking.links import preferences_url, unsubscribe_url

    source = Source(
        body=newsletter_body(),
        layout=LAYOUT,
        subject="{{ contact.first_name | default('Friend') }}, the garden in November",
        preheader="Our autumn bulb sale starts on Friday",
        track_links=True,
        track_opens=True,
        footer=True,
    )
    t0 = time.process_time()
    prepared = prepare(source)
    html, text = prepared.html, prepared.text
    prepare_ms = (time.process_time() - t0) * 1000
    email = Email(
        kind=Email.Kind.CAMPAIGN,
        code=uuid.uuid4(),
        from_email="news@postroom.example",
        from_name="Postroom Garden",
        subject=source.subject,
        html=html,
        text=text,
        links=prepared.links,
        personalised=True,
    )
    t0 = time.process_time()
    template = MimeTemplate(email)
    compile_ms = (time.process_time() - t0) * 1000

    cities = ["Köln", "Lyon", "Porto", "Leeds", "Graz"]
    recipients = []
    for i in range(args.messages):
        row = {
            "code": uuid.uuid4(),
            "email": f"reader{i}@example.org",
            "first_name": "Ann" if i % 7 else "",
            "last_name": f"Lee{i}",
            "status": "subscribed",
            "data": {"city": cities[i % 5], "plan": "pro" if i % 3 else "free"},
        }
        message = Message(id=i + 1, code=uuid.uuid4(), email=email, to_email=row["email"])
        # What content.context.recipient_contexts gives each recipient.
        context = {
            "contact": contact_context(row, ["newsletter"]),
            "data": {},
            "project": {"name": "Postroom Garden", "postal_address": "1 Garden Lane"},
            "unsubscribe_url": unsubscribe_url(message.code),
            "preferences_url": preferences_url(message.code),
            "_message": message.code.hex,
        }
        recipients.append((message, context))

    template.render(*recipients[0])  # warm-up
    t0 = time.process_time()
    size = 0
    for message, context in recipients:
        size += len(template.render(message, context))
    cpu = time.process_time() - t0
    per_core = args.messages / cpu
    links = template.render(*recipients[0]).count(b"/c/")

    # DKIM, on top: what signing costs each message (body hash, headers, signature).
    dkim_ms = {}
    sample = [template.render(m, c) for m, c in recipients[:2000]]
    for algorithm in (dkim.RSA, dkim.ED25519):
        signer = dkim.Signer("postroom.example", "bench", algorithm, dkim.generate(algorithm)[0])
        t0 = time.process_time()
        for raw in sample:
            signer.sign(raw)
        dkim_ms[algorithm] = (time.process_time() - t0) / len(sample) * 1000
    figures = {
        "messages": args.messages,
        "html_kb": round(len(html) / 1024, 1),
        "message_kb": round(size / args.messages / 1024, 1),
        "prepare_ms": round(prepare_ms, 1),
        "compile_ms": round(compile_ms, 1),
        "us_per_message": round(cpu / args.messages * 1e6, 1),
        "messages_per_second_per_core": round(per_core),
        "target_per_core": TARGET_PER_CORE,
        "met_target": per_core >= TARGET_PER_CORE,
        "links_tracked": links,
        "dkim_rsa2048_ms": round(dkim_ms[dkim.RSA], 3),
        "dkim_ed25519_ms": round(dkim_ms[dkim.ED25519], 3),
        "with_rsa_per_core": round(1000 / (1000 / per_core + dkim_ms[dkim.RSA])),
        "with_ed25519_per_core": round(1000 / (1000 / per_core + dkim_ms[dkim.ED25519])),
    }
    print(
        f"{args.messages:,} messages of {figures['message_kb']} KB, {links} tracked links: "
        f"{figures['us_per_message']} µs each, {round(per_core):,} per CPU-second; DKIM adds "
        f"{figures['dkim_rsa2048_ms']} ms (RSA-2048) or {figures['dkim_ed25519_ms']} ms (Ed25519)"
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
