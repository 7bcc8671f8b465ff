"""Who may open the pages, and what the browser may load.

The service binds 127.0.0.1 unless told otherwise; on any other address it needs WEB_TOKEN,
and then every request must carry it, as `Authorization: Bearer <token>` (scripts) or as the
password of HTTP Basic auth (a browser asks for it once). Compared in constant time.
Every response carries a strict Content-Security-Policy: scripts, styles, images and
connections from this service only, no inline code, no frames.

Before any of that, two checks that need no token:
- the Host header must name this service: an IP address, localhost, the bound address, this
  machine's name or a name in WEB_ALLOWED_HOSTS. A page on evil.example whose DNS answer turns
  into 127.0.0.1 (DNS rebinding) sends `Host: evil.example` and gets 421, never the class.
- a request body is at most MAX_BODY_BYTES: a mark is under 4 KB. A larger Content-Length gets
  413 before a byte of the body is read; a chunked body is counted as it arrives and cut off.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import socket
from dataclasses import dataclass

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.ops.secret_rule import secret_problem

MAX_BODY_BYTES = 16 * 1024  # four times the largest mark: room for its signals, not for a flood

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-resource-policy", b"same-origin"),
]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def access_problem(bind: str, token: str) -> str | None:
    """Why the service must not start with these settings, or None."""
    if not token:
        if is_loopback(bind):
            return None
        return (f"refusing to serve the class on {bind} without a token: set WEB_TOKEN (or bind 127.0.0.1, "
                "the default)")
    # A token that is set must be worth its name, on loopback too: an example value, a short,
    # repeated or dictionary one is guessed.
    weak = secret_problem("WEB_TOKEN", token)
    return f"refusing to serve the class on {bind}: {weak}" if weak else None


def host_name(header: str) -> str:
    """The name or address of a Host header, without its port, lower case ('[::1]:8080' -> '::1')."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].partition("]")[0]
    if header.count(":") == 1:
        header = header.partition(":")[0]
    return header.rstrip(".")


class AllowedHosts:
    """The names a request may give in its Host header (see the module's note).

    An IP address is always allowed: a browser that sends one connected to that address itself,
    so no page of another origin can be behind it. A name must be ours: rebinding needs one."""

    def __init__(self, bind: str, configured: str = "") -> None:
        names = {"localhost", host_name(bind), socket.gethostname().lower()}
        names |= {host_name(n) for n in configured.split(",") if n.strip()}
        self.any = "*" in names
        self.names = frozenset(n for n in names if n and n != "*")

    def allows(self, header: str) -> bool:
        name = host_name(header)
        if self.any or not name or name in self.names or name.endswith(".localhost"):
            return True  # no Host at all is HTTP/1.0 (no browser); *.localhost never leaves the machine
        try:
            ipaddress.ip_address(name)
            return True
        except ValueError:
            return False


def token_matches(authorization: str, token: str) -> bool:
    scheme, _, value = authorization.partition(" ")
    given = b""
    if scheme.lower() == "bearer":
        given = value.strip().encode()
    elif scheme.lower() == "basic":
        try:
            given = base64.b64decode(value.strip(), validate=True).partition(b":")[2]
        except (binascii.Error, ValueError):
            return False
    return hmac.compare_digest(given, token.encode())


async def _respond(send: Send, status: int, text: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain"), *(headers or []), *SECURITY_HEADERS]})
    await send({"type": "http.response.body", "body": text.encode() + b"\n"})


@dataclass
class _Exchange:
    started: bool = False  # the response has begun: a 413 can no longer be sent
    ended: bool = False
    cut: bool = False  # a started response's request body went over the limit


def _limited(receive: Receive, limit: int, exchange: _Exchange) -> Receive:
    """`receive` that counts the body as it arrives and stops it past `limit` bytes (a chunked
    body says no length up front). Before the response starts, FastAPI passes the HTTPException
    through and the client gets 413; once a stream is answering (a body sent along a GET of the
    events), the client is taken as gone and its stream ends, without a traceback."""
    seen = 0

    async def receive_limited() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                if exchange.started:
                    exchange.cut = True
                    return {"type": "http.disconnect"}
                raise HTTPException(413, f"a request body is at most {limit} bytes")
        return message

    return receive_limited


class Guard:
    """ASGI middleware: the Host check, the body limit, the token check (when a token is set)
    and the security headers."""

    def __init__(self, app: ASGIApp, token: str = "", hosts: AllowedHosts | None = None,
                 max_body: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.token = token
        self.hosts = hosts or AllowedHosts("127.0.0.1")
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        exchange = _Exchange()

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
                exchange.started = True
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                exchange.ended = True
            await send(message)

        headers = dict(scope.get("headers") or [])
        host = headers.get(b"host", b"").decode("latin-1")
        if not self.hosts.allows(host):
            await _respond(send, 421, "unknown Host: this service answers to its own address and WEB_ALLOWED_HOSTS")
            return
        if self.token:
            authorization = headers.get(b"authorization", b"").decode("latin-1")
            if not token_matches(authorization, self.token):
                await _respond(send, 401, "token required", [(b"www-authenticate", b'Basic realm="engagement"')])
                return
        length = headers.get(b"content-length")
        if length is not None:
            try:
                too_long = int(length) > self.max_body
            except ValueError:
                await _respond(send, 400, "bad Content-Length")
                return
            if too_long:  # refused before a byte of the body is read
                await _respond(send, 413, f"a request body is at most {self.max_body} bytes")
                return
        await self.app(scope, _limited(receive, self.max_body, exchange), send_with_headers)
        if exchange.cut and not exchange.ended:  # a stream cut off by the body limit: end it properly
            await send({"type": "http.response.body", "body": b"", "more_body": False})
