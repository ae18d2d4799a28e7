"""A small real HTTP client for the benchmark: one keep-alive connection, cookies, CSRF.

Just enough of a browser to measure the console as users reach it, through the production
server: a persistent HTTP/1.1 connection (as a browser keeps one open to the console), the
session and CSRF cookies, the CSRF token on every POST (the X-CSRFToken header htmx sends),
no redirect following, conditional GETs (If-None-Match) for polled fragments, and the request
htmx makes at once for a live part that asks for itself on load.

Its `get`/`post` answer with `status_code` and `content`, like Django's test client, so that
the in-process probes of bench/run.py and bench/suites.py run unchanged over HTTP. Only the
standard library: the project does not depend on requests.
"""

from __future__ import annotations

import html
import http.client
import re
import time
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from urllib.parse import urlencode, urlsplit

TIMEOUT_SECONDS = 120.0
CSRF_FIELD = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
# A live part that asks for itself as soon as the page has loaded (its counts are being taken).
LOAD_PART = re.compile(r'<div id="([^"]+)"[^>]*? hx-get="([^"]+)"[^>]*? hx-trigger="load, ')


@dataclass
class Reply:
    """One response: what the probes read (status_code, content) and the timing."""

    status_code: int
    content: bytes
    headers: dict[str, str] = field(default_factory=dict)
    elapsed_ms: float = 0.0
    # A page that came without its counts and asked for them on load (hx-trigger "load"):
    # the page's own time; elapsed_ms and content then include that request, as in a browser.
    painted_ms: float | None = None

    @property
    def text(self) -> str:
        return self.content.decode(errors="replace")


class LoginFailed(Exception):
    pass


class Session:
    """One user's browser: its own connection and cookies."""

    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        self.base_url = base_url.rstrip("/")
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.cookies: dict[str, str] = {}
        self._conn: http.client.HTTPConnection | None = None
        self.requests = 0
        self.reconnects = 0

    # -- the connection --------------------------------------------------------------------

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            self._conn = http.client.HTTPConnection(self.host, self.port, timeout=TIMEOUT_SECONDS)
            self.reconnects += 1
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict | None = None
    ) -> Reply:
        """Send one request; a connection the server closed (keep-alive timeout, a worker
        recycled by max_requests) is reopened once, as a browser does."""
        sent = {"Host": f"{self.host}:{self.port}", **(headers or {})}
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        for attempt in (1, 2):
            conn = self._connection()
            started = time.perf_counter()
            try:
                conn.request(method, path, body=body, headers=sent)
                response = conn.getresponse()
                content = response.read()
            except (http.client.HTTPException, ConnectionError, BrokenPipeError):
                self.close()
                if attempt == 2:
                    raise
                continue
            elapsed = (time.perf_counter() - started) * 1000
            self.requests += 1
            self._keep_cookies(response.msg.get_all("Set-Cookie") or [])
            if response.will_close:
                self.close()
            return Reply(response.status, content, dict(response.getheaders()), elapsed)
        raise AssertionError("unreachable")

    def _keep_cookies(self, headers: list[str]) -> None:
        for header in headers:
            jar = SimpleCookie()
            jar.load(header)
            for name, morsel in jar.items():
                if morsel["max-age"] == "0" or morsel.value == "":
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value

    # -- the test client's interface -------------------------------------------------------

    def get(self, path: str, headers: dict | None = None) -> Reply:
        """GET `path`; a full page whose live part asks for its counts on load gets that part
        too, at once, as htmx in a browser would: the time is until the counts are shown."""
        page = self.request("GET", path, headers=headers)
        asks = LOAD_PART.search(page.text) if not (headers or {}).get("HX-Request") else None
        if asks is None:
            return page
        target, url = asks.group(1), html.unescape(asks.group(2))
        part = self.request("GET", url, headers={"HX-Request": "true", "HX-Target": target})
        status = page.status_code if part.status_code == 200 else part.status_code
        content = page.content + part.content
        elapsed = page.elapsed_ms + part.elapsed_ms
        return Reply(status, content, page.headers, elapsed, painted_ms=page.elapsed_ms)

    def post(self, path: str, data: dict | list, headers: dict | None = None) -> Reply:
        """A form POST with the CSRF token, as htmx sends it (header) and a form does (field)."""
        token = self.csrf_token()
        fields = list(data.items()) if isinstance(data, dict) else list(data)
        body = urlencode([("csrfmiddlewaretoken", token), *fields], doseq=True).encode()
        sent = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-CSRFToken": token,
            "Referer": self.base_url + path,
            "Origin": self.base_url,
            **(headers or {}),
        }
        return self.request("POST", path, body=body, headers=sent)

    def csrf_token(self) -> str:
        if "csrftoken" not in self.cookies:
            self.get("/login/")
        try:
            return self.cookies["csrftoken"]
        except KeyError:
            raise LoginFailed("the server set no csrftoken cookie") from None

    def login(self, username: str, password: str) -> None:
        """Log in through the login form, once; afterwards the session cookie carries it."""
        page = self.get("/login/")
        match = CSRF_FIELD.search(page.text)
        if page.status_code != 200 or not match:
            raise LoginFailed(f"GET /login/ answered {page.status_code} without a form")
        reply = self.post("/login/", {"username": username, "password": password})
        if reply.status_code != 302 or "sessionid" not in self.cookies:
            raise LoginFailed(f"login as {username} answered {reply.status_code}")
