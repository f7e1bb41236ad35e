"""The WSGI application: Django, with the open pixel and the track API answered before it.

A campaign's opens arrive in a burst, and apps call track for every signup and order; neither
needs what Django's request handling does for a page (hosts, sessions, CSRF, messages, URL
resolution): about 0.3 ms of CPU a pixel, a third of what the server spent on one
(bench/events.py), and more for track (bench/api.py). tracking.views.open_pixel and the API's
track endpoint answer the same URLs inside Django (the test client, `runserver`, and every
track call the fast path hands over), and tests hold each pair to the same answers.
"""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections, connection

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "postroom.settings")
django_application = get_wsgi_application()

from postroom.tracking.fasttrack import answer_track  # noqa: E402  (after setup)
from postroom.tracking.pixel import answer_pixel, pixel_token  # noqa: E402


def application(environ: dict, start_response):
    try:
        answer = answer_early(environ)
    except BaseException:
        request_finished_early()
        raise
    if answer is None:
        return django_application(environ, start_response)
    request_finished_early()
    status, headers, body = answer
    start_response(status, headers)
    return [body]


def request_finished_early() -> None:
    """What Django does when a request ends: a connection this thread used (the key's lookup,
    the rate count, writes made in the request) is closed if broken or too old."""
    if not connection.in_atomic_block:
        close_old_connections()


def answer_early(environ: dict):
    """The pixel's or track's answer, or None for Django to answer."""
    token = pixel_token(environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", ""))
    if token is not None:
        return answer_pixel(token, environ.get("HTTP_USER_AGENT", ""))
    return answer_track(environ)
