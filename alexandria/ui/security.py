"""What keeps the dashboard safe to leave open: headers on every response (no sniffing, no caching, a strict
CSP), Host headers of this machine only (no DNS rebinding), and how an artifact is served (its type, in chunks).
Which artifact files may be served at all is the core's one check, `Store.open_recorded`."""

from __future__ import annotations

import mimetypes
import os
import re
from collections.abc import Iterator
from pathlib import Path

from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Pages load scripts from this server only (plotly needs inline styles); an artifact's own page runs
# sandboxed (an opaque origin: it cannot read the dashboard), see `Dashboard.artifact_file`.
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
    "frame-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'self'"
)
ARTIFACT_CSP = "sandbox allow-scripts"
_MIME = re.compile(r"^[A-Za-z0-9][\w.+-]*/[\w.+-]+$")


def content_type(real: Path, kind: str | None) -> str:
    guessed, _ = mimetypes.guess_type(real.name)
    if guessed:
        return guessed
    if kind and _MIME.match(kind):
        return kind
    return "application/octet-stream"


def file_chunks(fd: int) -> Iterator[bytes]:
    with os.fdopen(fd, "rb") as f:
        while chunk := f.read(1 << 16):
            yield chunk


class SecurityHeaders:
    """Headers every response gets unless it set its own: no sniffing, no caching, a strict CSP for pages."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                for name, value in (
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"cache-control", b"no-store"),
                    (b"content-security-policy", PAGE_CSP.encode()),
                ):
                    if name not in present:
                        headers.append((name, value))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class LocalHostOnly:
    """Refuses requests whose Host header names another machine (400): a web page elsewhere cannot read
    the dashboard through DNS rebinding. `allowed` None: any host (the server was bound to every address)."""

    def __init__(self, app: ASGIApp, allowed: frozenset[str] | None) -> None:
        self.app = app
        self.allowed = allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.allowed is not None:
            host = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), "")
            name = host[: host.find("]") + 1] if host.startswith("[") else host.split(":")[0]
            if name.lower() not in self.allowed:
                await PlainTextResponse("unexpected Host header", status_code=400)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def allowed_hosts(host: str) -> frozenset[str] | None:
    """The Host header values a server bound to `host` answers: this machine's loopback names and the host
    itself; None (any) when bound to every address, as the machine's other names are then meant too."""
    if host in ("0.0.0.0", "::", ""):
        return None
    return frozenset({"127.0.0.1", "localhost", "[::1]", host.lower(), f"[{host.lower()}]"})
