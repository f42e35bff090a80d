"""WebFetch connects to the address it validated, never to a second DNS answer (rebinding).

Real HTTP(S) servers on loopback play the parts: ``127.0.0.1`` is "the public host" (the
address check is told to accept it, as it would a public address) and ``127.0.0.2`` on the
same port is the internal service a rebinding answer points at (the gate, PostgreSQL). The
OS resolver is the one thing replaced: ``socket.getaddrinfo`` answers from a script, one
answer per lookup, so the test controls what each lookup says.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from mergegate.runtime import tools
from tests.conftest import require_tool
from tests.runtime.llm_support import Setup, make_setup

HOST = "docs.example.test"
PUBLIC = "127.0.0.1"  # accepted by the address check in these tests, like a public address
INTERNAL = "127.0.0.2"  # loopback: what a rebinding answer points at


@dataclass
class Site:
    """One loopback HTTP(S) server that records what reached it."""

    address: str
    port: int
    tls: ssl.SSLContext | None = None
    hits: list[dict[str, str]] = field(default_factory=list)
    sni: list[str | None] = field(default_factory=list)

    def __post_init__(self) -> None:
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                site.hits.append({"path": self.path, "host": self.headers.get("Host", "")})
                body = f"hello from {site.address}".encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((self.address, self.port), Handler)
        self.port = self.server.server_address[1]
        if self.tls is not None:
            self.tls.sni_callback = lambda _sock, name, _ctx: self.sni.append(name)
            self.server.socket = self.tls.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Resolver:
    """Answers each ``getaddrinfo`` call with the next scripted list of addresses."""

    answers: list[list[str]]
    asked: list[str] = field(default_factory=list)

    def __call__(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> list[tuple]:
        name = host.decode() if isinstance(host, bytes) else str(host)
        self.asked.append(name)
        if name != HOST:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        addresses = self.answers[min(len(self.asked), len(self.answers)) - 1]
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, int(port or 0))) for a in addresses]


@pytest.fixture
def public_is_allowed(monkeypatch) -> None:
    """The address check treats PUBLIC as a public address; everything else as usual."""
    real = tools._public_address
    monkeypatch.setattr(tools, "_public_address", lambda addr: addr == PUBLIC or real(addr))


@pytest.fixture
def sites(request: pytest.FixtureRequest) -> Iterator[tuple[Site, Site]]:
    """The public and the internal site on one port: plain HTTP, or TLS when the test
    names a certificate (``"good"``: for HOST; ``"other"``: for another name)."""
    stem = getattr(request, "param", None)
    tls: list[ssl.SSLContext | None] = [None, None]
    if stem:
        pki = request.getfixturevalue("pki")
        request.getfixturevalue("trust_test_ca")
        tls = [_server_tls(pki, stem), _server_tls(pki, stem)]
    public = Site(PUBLIC, 0, tls[0])
    internal = Site(INTERNAL, public.port, tls[1])
    yield public, internal
    public.close()
    internal.close()


def _fetch(setup: Setup, url: str) -> Any:
    runner = setup.runner("fetcher", tools=f"WebFetch(domain:{HOST})")
    return asyncio.run(runner.call("WebFetch", {"url": url}))


def _logged(setup: Setup) -> list[tuple[str, str, str]]:
    return [(e["action"], e["outcome"], e["reason"]) for e in setup.audit() if e["tool"] == "WebFetch"]


@pytest.mark.parametrize(("sites", "scheme"), [(None, "http"), ("good", "https")], indirect=["sites"])
def test_the_connection_goes_to_the_validated_address_not_to_a_later_dns_answer(
    tmp_path: Path, monkeypatch, sites, public_is_allowed, scheme: str
) -> None:
    public, internal = sites
    # The runner's check and the fetch's own check see the public address; any later
    # lookup (a client resolving the name again to connect) would get loopback.
    resolver = Resolver([[PUBLIC], [PUBLIC], [INTERNAL]])
    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    setup = make_setup(tmp_path)

    result = _fetch(setup, f"{scheme}://{HOST}:{public.port}/docs?page=2")

    assert result.status == "allowed", result.reason
    assert result.output == f"HTTP 200\nhello from {PUBLIC}"
    assert public.hits == [{"path": "/docs?page=2", "host": f"{HOST}:{public.port}"}]
    # TLS to the pinned address still names the host (SNI) and verified its certificate.
    assert public.sni == ([HOST] if scheme == "https" else [])
    assert internal.hits == [] and internal.sni == []
    assert resolver.asked == [HOST, HOST]  # nothing resolved the name a third time
    assert [(a, o) for a, o, _ in _logged(setup)] == [("tool_call", "allowed"), ("tool_result", "allowed")]


def test_a_name_that_rebinds_between_the_check_and_the_fetch_is_refused_and_audited(
    tmp_path: Path, monkeypatch, sites, public_is_allowed
) -> None:
    public, internal = sites
    monkeypatch.setattr(socket, "getaddrinfo", Resolver([[PUBLIC], [INTERNAL]]))
    setup = make_setup(tmp_path)

    result = _fetch(setup, f"http://{HOST}:{public.port}/")

    assert result.status == "refused"
    assert result.reason == f"{HOST} resolves to a private, loopback or link-local address"
    assert public.hits == [] and internal.hits == []
    assert _logged(setup) == [("tool_call", "allowed", ""), ("tool_result", "refused", result.reason)]


@pytest.mark.parametrize("answer", [[PUBLIC, INTERNAL], [INTERNAL, PUBLIC], ["169.254.169.254"], ["::1", PUBLIC]])
def test_a_name_with_any_forbidden_address_is_refused_before_anything_runs(
    tmp_path: Path, monkeypatch, sites, public_is_allowed, answer: list[str]
) -> None:
    public, internal = sites
    resolver = Resolver([answer])
    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    setup = make_setup(tmp_path)

    result = _fetch(setup, f"http://{HOST}:{public.port}/")

    assert result.status == "refused"
    assert "resolves to a private, loopback or link-local address" in result.reason
    assert public.hits == [] and internal.hits == []
    assert resolver.asked == [HOST]
    assert _logged(setup) == [("tool_call", "refused", result.reason)]


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        (f"http://{HOST}\uff0e/", "ambiguous host"),  # a fullwidth dot: urllib keeps it, httpx maps it to "."
        (f"http://{HOST}\t/", "Invalid non-printable ASCII character"),  # urllib drops the tab, httpx refuses
        (f"http://{HOST}:80:80/", "Invalid port"),
    ],
)
def test_a_url_the_client_would_read_differently_from_the_check_is_refused(
    tmp_path: Path, monkeypatch, url: str, reason: str
) -> None:
    resolver = Resolver([[PUBLIC]])
    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    setup = make_setup(tmp_path)

    result = _fetch(setup, url)

    assert result.status == "refused" and reason in result.reason
    assert resolver.asked == []
    assert _logged(setup) == [("tool_call", "refused", result.reason)]


def test_a_pinned_connection_that_fails_is_an_error_result_not_a_crash(
    tmp_path: Path, monkeypatch, sites, public_is_allowed
) -> None:
    public, internal = sites
    public.close()  # the validated address answers nothing; the internal one still listens
    monkeypatch.setattr(socket, "getaddrinfo", Resolver([[PUBLIC], [PUBLIC], [INTERNAL]]))
    setup = make_setup(tmp_path)

    result = _fetch(setup, f"http://{HOST}:{public.port}/")

    assert result.status == "allowed"
    assert result.output.startswith("error: ") and "hello" not in result.output
    assert internal.hits == []
    assert [(a, o) for a, o, _ in _logged(setup)] == [("tool_call", "allowed"), ("tool_result", "allowed")]


# --- TLS: the test's certificates -----------------------------------------------------------


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A test CA and two server certificates it signed: one for HOST, one for another name."""
    require_tool("openssl")
    d = tmp_path_factory.mktemp("pki")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test CA",
             "-keyout", "ca.key", "-out", "ca.pem", cwd=d)  # fmt: skip
    for stem, name in (("good", HOST), ("other", "elsewhere.example.test")):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
                 "-keyout", f"{stem}.key", "-out", f"{stem}.csr", cwd=d)  # fmt: skip
        (d / f"{stem}.ext").write_text(f"subjectAltName=DNS:{name}\n")
        _openssl("x509", "-req", "-in", f"{stem}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                 "-days", "1", "-extfile", f"{stem}.ext", "-out", f"{stem}.pem", cwd=d)  # fmt: skip
    return d


def _server_tls(pki: Path, stem: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki / f"{stem}.pem", pki / f"{stem}.key")
    return ctx


@pytest.fixture
def trust_test_ca(monkeypatch, pki: Path) -> None:
    monkeypatch.setattr(tools, "_tls_context", lambda: ssl.create_default_context(cafile=str(pki / "ca.pem")))


@pytest.mark.parametrize("sites", ["other"], indirect=True)
def test_https_to_the_pinned_address_with_a_certificate_for_another_name_fails(
    tmp_path: Path, monkeypatch, sites, public_is_allowed
) -> None:
    public, internal = sites
    monkeypatch.setattr(socket, "getaddrinfo", Resolver([[PUBLIC]]))
    setup = make_setup(tmp_path)

    result = _fetch(setup, f"https://{HOST}:{public.port}/")

    assert result.status == "allowed"
    assert result.output.startswith("error: ") and "CERTIFICATE_VERIFY_FAILED" in result.output
    assert public.hits == [] and internal.hits == []
