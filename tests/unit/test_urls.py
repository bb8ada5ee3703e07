"""Loopback hosts, the plain-http refusal and URLs safe to show."""

from __future__ import annotations

import pytest

from fimls.urls import insecure_reason, is_loopback_host, public_url


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("LOCALHOST", True),
        ("LocalHost.", True),
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("127.255.255.254", True),
        ("::1", True),
        ("[::1]", True),
        ("0:0:0:0:0:0:0:1", True),
        ("::ffff:127.0.0.1", True),
        ("[::ffff:127.0.0.1]", True),
        ("::ffff:7f00:1", True),
        ("127.evil.example", False),
        ("127.0.0.1.evil.example", False),
        ("localhost.evil.example", False),
        ("evil-localhost", False),
        ("localhost..", False),
        ("0x7f.1", False),
        ("0x7f000001", False),
        ("2130706433", False),
        ("127.1", False),
        ("0177.0.0.1", False),
        ("127.0.0.1.", False),
        ("10.0.0.1", False),
        ("0.0.0.0", False),
        ("::", False),
        ("::ffff:10.0.0.1", False),
        ("", False),
    ],
)
def test_is_loopback_host(host: str, loopback: bool):
    assert is_loopback_host(host) is loopback


@pytest.mark.parametrize(
    ("url", "allow", "refused"),
    [
        ("https://api.deepseek.com", False, False),
        ("HTTPS://API.DEEPSEEK.COM/beta", False, False),
        ("http://127.0.0.1:8765", False, False),
        ("http://localhost:1", False, False),
        ("http://LOCALHOST./v1", False, False),
        ("http://[::1]:1", False, False),
        ("http://[::ffff:127.0.0.1]/", False, False),
        ("HTTP://127.0.0.1/", False, False),
        ("http://api.example.com", False, True),
        ("http://10.0.0.5:8000", False, True),
        ("http://127.evil.example/", False, True),
        ("http://localhost.evil.example/", False, True),
        ("http://127.0.0.1@evil.example/", False, True),
        ("http://localhost:8080@evil.example/", False, True),
        ("http://user:pw@127.0.0.1.evil.example/", False, True),
        ("http://0x7f.1/", False, True),
        ("http://2130706433/", False, True),
        ("http://127.1/", False, True),
        ("http://evil.example\\@127.0.0.1/", False, True),
        ("http://evil.example\\@127.0.0.1/", True, True),
        ("http://127.0.0.1 /", False, True),
        ("http://api.example.com", True, False),
        ("ftp://example.com", True, True),
        ("file:///etc/passwd", True, True),
        ("api.deepseek.com", False, True),
        ("https://", False, True),
        ("https://host:99999/", False, True),
        ("http://[::1/", False, True),
    ],
)
def test_insecure_reason(url: str, allow: bool, refused: bool):
    assert (insecure_reason(url, allow) is not None) is refused


def test_refusal_messages_are_clear_and_keep_credentials_out():
    reason = insecure_reason("http://user:sk-secret@api.example.com/?key=sk-q", False)
    assert reason is not None and "api.example.com" in reason and "allowInsecureHttp" in reason
    assert "sk-" not in reason
    bad = insecure_reason("https://user:sk-secret@host:99999/", False)
    assert bad is not None and "not a valid URL" in bad and "sk-" not in bad
    scheme = insecure_reason("ftp://example.com", False)
    assert scheme is not None and "'ftp'" in scheme


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:pw@host.example/beta?key=1#frag", "https://host.example/beta"),
        ("https://api.deepseek.com", "https://api.deepseek.com"),
        ("http://127.0.0.1:8080/v1/", "http://127.0.0.1:8080/v1/"),
        ("http://u:p@[::1]:9/x", "http://[::1]:9/x"),
        ("https://sk-abc@host.example:443", "https://host.example:443"),
        ("not a url sk-abc", ""),
        ("https://h:bad/", ""),
    ],
)
def test_public_url(url: str, shown: str):
    assert public_url(url) == shown
