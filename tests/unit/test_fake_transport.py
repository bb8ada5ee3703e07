"""Transport realism of the fakes: TLS, IPv6, the loopback proxy, byte-level answer faults."""

from __future__ import annotations

import json
import socket
import ssl
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme

sys.path.insert(0, str(Path(__file__).parents[2] / "scripts"))

from fake_deepseek import FakeDeepSeek, Reply
from fake_proxy import FakeProxy

MODEL = "deepseek-flash"
AUTH = {"Authorization": "Bearer sk-test"}
BODY = {"model": MODEL, "prompt": "x = "}


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def server_context(ca: trustme.CA, *names: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(ctx)
    return ctx


def client_context(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


# -- TLS ---------------------------------------------------------------------------------------


def test_https_serves_and_counts_handshakes(ca: trustme.CA) -> None:
    with FakeDeepSeek(ssl_context=server_context(ca, "127.0.0.1", "localhost"), token_rate=200) as fake:
        assert fake.url.startswith("https://127.0.0.1:")
        fake.default = Reply(text="abcdefghi")
        with httpx.Client(base_url=fake.url, headers=AUTH, verify=client_context(ca), trust_env=False) as c:
            assert c.post("/beta/completions", json=BODY).json()["choices"][0]["text"] == "abcdefghi"
            with c.stream("POST", "/beta/completions", json={**BODY, "stream": True}) as r:
                lines = [line for line in r.iter_lines() if line.startswith("data: ")]
            assert len(lines) == 5  # three tokens, the finish, [DONE]
        assert (fake.connections, fake.tls_handshakes) == (1, 1)  # one kept-alive connection


def test_untrusted_certificate_is_refused(ca: trustme.CA) -> None:
    with FakeDeepSeek(ssl_context=server_context(ca, "127.0.0.1")) as fake:
        with (
            httpx.Client(base_url=fake.url, headers=AUTH, trust_env=False) as c,
            pytest.raises(httpx.ConnectError),
        ):
            c.post("/beta/completions", json=BODY)  # default trust store: the test CA is unknown
        assert fake.tls_handshakes == 0
        assert fake.fim_requests() == []


def test_hostname_mismatch_is_refused(ca: trustme.CA) -> None:
    with FakeDeepSeek(ssl_context=server_context(ca, "fimls.example")) as fake:
        with (
            httpx.Client(base_url=fake.url, headers=AUTH, verify=client_context(ca), trust_env=False) as c,
            pytest.raises(httpx.ConnectError, match=r"(?i)hostname|match|certificate"),
        ):
            c.post("/beta/completions", json=BODY)
        assert fake.fim_requests() == []


def test_plain_http_to_the_tls_port_fails_and_the_fake_survives(ca: trustme.CA) -> None:
    with FakeDeepSeek(ssl_context=server_context(ca, "127.0.0.1")) as fake:
        plain = fake.url.replace("https://", "http://")
        with httpx.Client(trust_env=False, timeout=5) as c, pytest.raises(httpx.HTTPError):
            c.post(f"{plain}/beta/completions", headers=AUTH, json=BODY)
        with httpx.Client(base_url=fake.url, headers=AUTH, verify=client_context(ca), trust_env=False) as c:
            assert c.post("/beta/completions", json=BODY).status_code == 200


def test_hang_up_is_seen_over_tls(ca: trustme.CA) -> None:
    with FakeDeepSeek(ssl_context=server_context(ca, "127.0.0.1"), token_rate=20) as fake:
        fake.default = Reply(text="abc" * 200)
        with httpx.Client(base_url=fake.url, headers=AUTH, verify=client_context(ca), trust_env=False) as c:
            with c.stream("POST", "/beta/completions", json={**BODY, "stream": True}) as r:
                for line in r.iter_lines():
                    if line.startswith("data: "):
                        break
            closed = time.monotonic()
        [log] = fake.fim_requests()
        assert fake.wait_for(lambda: log.aborted, timeout=2.0)
        assert log.finished is not None and log.finished - closed < 1.0
        assert 1 <= log.tokens_sent < 20


# -- IPv6 ---------------------------------------------------------------------------------------


def _ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback on this machine")
def test_ipv6_loopback() -> None:
    with FakeDeepSeek(host="::1") as fake:
        assert fake.url == f"http://[::1]:{fake.port}"
        with httpx.Client(base_url=fake.url, headers=AUTH, trust_env=False) as c:
            assert c.post("/beta/completions", json=BODY).status_code == 200
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", fake.port), timeout=1):
            pass  # bound to ::1 only


# -- the loopback proxy -------------------------------------------------------------------------


def test_proxy_forwards_absolute_form_requests() -> None:
    with FakeDeepSeek() as fake, FakeProxy() as proxy:
        with httpx.Client(proxy=proxy.url, headers=AUTH, trust_env=False) as c:
            r = c.post(f"{fake.url}/beta/completions", json=BODY)
            assert r.status_code == 200
            assert r.headers["connection"] == "close"
            assert c.get(f"{fake.url}/models").status_code == 200
        first = proxy.requests[0]
        assert (first.method, first.target) == ("POST", f"{fake.url}/beta/completions")
        assert (first.authority, first.status, first.authorized) == (f"127.0.0.1:{fake.port}", 200, None)
        assert [r.method for r in proxy.requests] == ["POST", "GET"]
        assert fake.fim_requests()[0].completed


def test_proxy_tunnels_connect_for_tls(ca: trustme.CA) -> None:
    with FakeDeepSeek(ssl_context=server_context(ca, "127.0.0.1")) as fake, FakeProxy() as proxy:
        with httpx.Client(proxy=proxy.url, headers=AUTH, verify=client_context(ca), trust_env=False) as c:
            assert c.post(f"{fake.url}/beta/completions", json=BODY).status_code == 200
            assert c.post(f"{fake.url}/beta/completions", json=BODY).status_code == 200
        [tunnel] = proxy.requests  # both requests through one tunnel
        assert (tunnel.method, tunnel.target, tunnel.status) == ("CONNECT", f"127.0.0.1:{fake.port}", 200)
        assert fake.tls_handshakes == 1


def test_proxy_streams_and_passes_hang_ups_on() -> None:
    with FakeDeepSeek(token_rate=20) as fake, FakeProxy() as proxy:
        fake.default = Reply(text="abc" * 200)
        with (
            httpx.Client(proxy=proxy.url, headers=AUTH, trust_env=False) as c,
            c.stream("POST", f"{fake.url}/beta/completions", json={**BODY, "stream": True}) as r,
        ):
            for line in r.iter_lines():
                if line.startswith("data: "):
                    break
        [log] = fake.fim_requests()
        assert fake.wait_for(lambda: log.aborted, timeout=2.0)


def test_proxy_credentials() -> None:
    with FakeDeepSeek() as fake, FakeProxy(auth=("alice", "s3cret")) as proxy:
        with httpx.Client(proxy=proxy.url, headers=AUTH, trust_env=False) as c:
            refused = c.post(f"{fake.url}/beta/completions", json=BODY)
        assert refused.status_code == 407
        assert refused.headers["proxy-authenticate"].startswith("Basic")
        with httpx.Client(proxy=proxy.url_with_credentials(), headers=AUTH, trust_env=False) as c:
            assert c.post(f"{fake.url}/beta/completions", json=BODY).status_code == 200
        assert [r.authorized for r in proxy.requests] == [False, True]
        assert "s3cret" not in repr(proxy.requests)
        assert len(fake.fim_requests()) == 1


def test_proxy_needs_credentials_for_connect_too(ca: trustme.CA) -> None:
    with (
        FakeDeepSeek(ssl_context=server_context(ca, "127.0.0.1")) as fake,
        FakeProxy(auth=("a", "b")) as proxy,
    ):
        with (
            httpx.Client(proxy=proxy.url, headers=AUTH, verify=client_context(ca), trust_env=False) as c,
            pytest.raises(httpx.ProxyError),
        ):
            c.post(f"{fake.url}/beta/completions", json=BODY)
        assert proxy.requests[0].status == 407


@pytest.mark.parametrize(("failure", "status"), [("refuse", 502), ("close", 0)])
def test_proxy_failure_modes(failure: str, status: int) -> None:
    with FakeDeepSeek() as fake, FakeProxy(failure=failure) as proxy:
        with httpx.Client(proxy=proxy.url, headers=AUTH, trust_env=False, timeout=5) as c:
            if failure == "refuse":
                assert c.post(f"{fake.url}/beta/completions", json=BODY).status_code == 502
            else:
                with pytest.raises(httpx.RemoteProtocolError):
                    c.post(f"{fake.url}/beta/completions", json=BODY)
        assert proxy.requests[0].status == status
        assert fake.requests == []  # nothing got through


def test_proxy_unreachable_target_is_502() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]
    with FakeProxy() as proxy, httpx.Client(proxy=proxy.url, trust_env=False) as c:
        assert c.get(f"http://127.0.0.1:{dead}/models").status_code == 502


# -- byte-level answer faults -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "wire",
    [
        pytest.param(b"5\r\nhello\r\n3", id="partial chunk-size line"),
        pytest.param(b"5\r\nhello\r\n0\r\nX-Trailer: 1", id="partial trailer"),
        pytest.param(b"5\r\nhello\r", id="lone CR"),
        pytest.param(b"5\r\nhel", id="short chunk"),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_truncated_chunked_bodies_end_in_a_protocol_error(wire: bytes, stream: bool) -> None:
    with (
        FakeDeepSeek() as fake,
        httpx.Client(base_url=fake.url, headers=AUTH, trust_env=False, timeout=5) as c,
    ):
        fake.script.append(Reply(raw_wire=wire))
        t0 = time.monotonic()
        with (
            pytest.raises(httpx.RemoteProtocolError),
            c.stream("POST", "/beta/completions", json={**BODY, "stream": stream}) as r,
        ):
            assert r.status_code == 200
            assert r.headers["transfer-encoding"] == "chunked"
            r.read()
        assert time.monotonic() - t0 < 2.0
        assert fake.fim_requests()[0].status == 200
        assert c.post("/beta/completions", json=BODY).status_code == 200  # next connection is fine


def test_raw_wire_with_a_content_length_that_lies() -> None:
    with (
        FakeDeepSeek() as fake,
        httpx.Client(base_url=fake.url, headers=AUTH, trust_env=False, timeout=5) as c,
    ):
        fake.script.append(Reply(raw_wire=b'{"choices": [', headers={"Content-Length": "100"}))
        with pytest.raises(httpx.RemoteProtocolError):
            c.post("/beta/completions", json=BODY)


def test_raw_wire_on_a_listing_route() -> None:
    with (
        FakeDeepSeek() as fake,
        httpx.Client(base_url=fake.url, headers=AUTH, trust_env=False, timeout=5) as c,
    ):
        fake.models_reply = Reply(raw_wire=b'A\r\n{"data": [')
        with pytest.raises(httpx.RemoteProtocolError):
            c.get("/models")


@pytest.mark.parametrize("wire", [None, b"5\r\nhello\r\n"])
def test_connection_reset(wire: bytes | None) -> None:
    with (
        FakeDeepSeek() as fake,
        httpx.Client(base_url=fake.url, headers=AUTH, trust_env=False, timeout=5) as c,
    ):
        fake.script.append(Reply(reset=True, raw_wire=wire))
        with pytest.raises(httpx.ReadError, match="Connection reset by peer"):
            c.post("/beta/completions", json=BODY).read()
        assert fake.fim_requests()[0].status == (0 if wire is None else 200)
        assert c.post("/beta/completions", json=BODY).status_code == 200


def test_slow_drip() -> None:
    with (
        FakeDeepSeek() as fake,
        httpx.Client(base_url=fake.url, headers=AUTH, trust_env=False, timeout=5) as c,
    ):
        fake.script.append(Reply(raw_body=b'{"x": 1}', drip=0.03))
        t0 = time.monotonic()
        got: list[bytes] = []
        with c.stream("POST", "/beta/completions", json=BODY) as r:
            got.extend(r.iter_raw())
        assert b"".join(got) == b'{"x": 1}'
        assert time.monotonic() - t0 >= 7 * 0.03 - 0.01
        assert len(got) >= 4  # it really arrived in pieces


def test_drip_applies_to_streams() -> None:
    with (
        FakeDeepSeek() as fake,
        httpx.Client(base_url=fake.url, headers=AUTH, trust_env=False, timeout=10) as c,
    ):
        fake.script.append(Reply(text="ab", drip=0.002))
        events: list[Any] = []
        with c.stream("POST", "/beta/completions", json={**BODY, "stream": True}) as r:
            events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: {")]
        assert "".join(e["choices"][0]["text"] for e in events) == "ab"
