from __future__ import annotations

import pytest

from postroom.lib.env import envbool, envint, envsecret, persisted_secret
from postroom.lib.mailconfig import parse_smtp_url


def test_smtp_urls() -> None:
    starttls = parse_smtp_url("smtp+starttls://me%40x.org:p%3Ass@mail.example.com")
    assert starttls["EMAIL_HOST"] == "mail.example.com"
    assert starttls["EMAIL_PORT"] == 587
    assert starttls["EMAIL_HOST_USER"] == "me@x.org"
    assert starttls["EMAIL_HOST_PASSWORD"] == "p:ss"
    assert starttls["EMAIL_USE_TLS"] and not starttls["EMAIL_USE_SSL"]
    assert parse_smtp_url("smtps://h")["EMAIL_PORT"] == 465
    assert parse_smtp_url("smtp://h:2525")["EMAIL_PORT"] == 2525
    with pytest.raises(ValueError, match="unknown scheme"):
        parse_smtp_url("http://h")


def test_env_readers(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("X_BOOL", "yes")
    monkeypatch.setenv("X_INT", " 42 ")
    assert envbool("X_BOOL", False) is True
    assert envbool("X_MISSING", True) is True
    assert envint("X_INT", 1) == 42
    (tmp_path / "secret").write_text("s3cret\n")
    monkeypatch.setenv("X_SECRET_FILE", str(tmp_path / "secret"))
    assert envsecret("X_SECRET") == "s3cret"


def test_a_persisted_secret_is_made_once_and_private(tmp_path) -> None:
    path = tmp_path / "sub" / "secret_key"
    first = persisted_secret(path)
    assert persisted_secret(path) == first
    assert len(first) > 40
    assert path.stat().st_mode & 0o077 == 0


def test_concurrent_first_starts_agree_on_one_secret(tmp_path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    path = tmp_path / "secret_key"
    with ThreadPoolExecutor(8) as pool:
        values = set(pool.map(lambda _: persisted_secret(path), range(16)))
    assert len(values) == 1
    assert list(tmp_path.iterdir()) == [path]
