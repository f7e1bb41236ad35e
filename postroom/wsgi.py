"""The WSGI application: Django, with the open pixel answered before it.

A campaign's opens arrive in a burst, and a pixel needs none of what Django's request handling
does for a page (hosts, sessions, CSRF, messages, URL resolution): about 0.3 ms of CPU a hit,
a third of what the server spent on one (bench/events.py). tracking.views.open_pixel answers
the same URL inside Django (the test client, `runserver`), and tests hold the two to the same
answers.
"""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections, connection

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "postroom.settings")
django_application = get_wsgi_application()

from postroom.tracking.pixel import answer_pixel, pixel_token  # noqa: E402  (after setup)


def application(environ: dict, start_response):
    token = pixel_token(environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", ""))
    if token is None:
        return django_application(environ, start_response)
    try:
        status, headers, body = answer_pixel(token, environ.get("HTTP_USER_AGENT", ""))
    finally:
        # What Django does when a request ends: a connection this thread used (hits written
        # in the request, POSTROOM_HIT_BATCHES=false) is closed if broken or too old.
        if not connection.in_atomic_block:
            close_old_connections()
    start_response(status, headers)
    return [body]
