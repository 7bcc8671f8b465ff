"""Who may open the pages, and what the browser may load.

The service binds 127.0.0.1 unless told otherwise; on any other address it needs WEB_TOKEN,
and then every request must carry it, as `Authorization: Bearer <token>` (scripts) or as the
password of HTTP Basic auth (a browser asks for it once). Compared in constant time.
Every response carries a strict Content-Security-Policy: scripts, styles, images and
connections from this service only, no inline code, no frames.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress

from shared.secret_check import secret_problem

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
    if is_loopback(bind):
        return None
    if not token:
        return (f"refusing to serve the class on {bind} without a token: set WEB_TOKEN (or bind 127.0.0.1, "
                "the default)")
    weak = secret_problem("WEB_TOKEN", token)  # an example value or a short one: anyone could guess it
    return f"refusing to serve the class on {bind}: {weak}" if weak else None


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


class Guard:
    """ASGI middleware: the token check (when a token is set) and the security headers."""

    def __init__(self, app, token: str = "") -> None:  # type: ignore[no-untyped-def]
        self.app = app
        self.token = token

    async def __call__(self, scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message) -> None:  # type: ignore[no-untyped-def]
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        if self.token:
            headers = dict(scope.get("headers") or [])
            authorization = headers.get(b"authorization", b"").decode("latin-1")
            if not token_matches(authorization, self.token):
                await send_with_headers({"type": "http.response.start", "status": 401,
                                         "headers": [(b"content-type", b"text/plain"),
                                                     (b"www-authenticate", b'Basic realm="engagement"')]})
                await send({"type": "http.response.body", "body": b"token required\n"})
                return
        await self.app(scope, receive, send_with_headers)
