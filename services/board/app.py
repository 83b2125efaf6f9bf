"""The board's HTTP server (stdlib ``http.server``, one thread per request; server-sent events
hold their thread while a page is open, which suits a board watched by a few people).

Routes: ``/login``, ``/logout``, ``/`` (alerts), ``/alert?id=``, ``/alert/command`` (POST),
``/machines``, ``/events`` (server-sent events), ``/api/trend?id=``, ``/static/*``, ``/health``.
Every data route needs a session and shows only the session's tenant; every POST needs the
CSRF token; commands are checked against the shared rule table and written to
``alert.commands`` only.
"""

from __future__ import annotations

import json
import logging
import queue
import secrets
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from board import pages
from board.archive import Archive, ArchiveUnavailable
from board.live import AlertFeed
from board.sessions import (
    LOGIN_COOKIE,
    SESSION_COOKIE,
    LoginThrottle,
    Session,
    Sessions,
    cookie,
    parse_cookies,
    tokens_match,
)
from board.users import UserFile
from board.view import Filters, actor_name, live_payload, merge_latest, ordered, trend_window
from plantstream.alertstate import InvalidCommand
from plantstream.cli.alerts import command_record, parse_until, send_command
from plantstream.errors import PlantstreamError
from plantstream.settings import Settings

log = logging.getLogger("board")
STATIC = Path(__file__).resolve().parent / "static"
STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".svg": "image/svg+xml"}
MAX_BODY = 64 * 1024
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
KEEPALIVE_S = 15.0
SENT = {"acknowledge": "Acknowledgement sent", "silence": "Shelve sent", "resolve": "Resolve sent"}


def now_us() -> int:
    return int(time.time() * 1e6)


@dataclass
class Board:
    """What every request shares."""

    settings: Settings
    archive: Archive
    feed: AlertFeed
    users: UserFile
    sessions: Sessions
    stopping: threading.Event
    throttle: LoginThrottle

    def current(self, tenant: str) -> dict[str, dict[str, Any]]:
        return merge_latest(self.archive.latest_alerts(tenant), self.feed.latest(), tenant)


class Handler(BaseHTTPRequestHandler):
    board: Board  # set on the subclass made by make_server
    server_version = "plantstream-board"
    sys_version = ""
    protocol_version = "HTTP/1.1"

    # ---- plumbing -------------------------------------------------------------------------
    def log_message(self, fmt: str, *args: Any) -> None:
        log.debug("request", extra={"line": fmt % args})

    def _send(self, status: int, body: bytes, ctype: str = "text/html; charset=utf-8",
              headers: dict[str, str] | None = None, cookies: list[str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "same-origin")
        self.send_header("X-Frame-Options", "DENY")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        for c in cookies or []:
            self.send_header("Set-Cookie", c)
        self.end_headers()
        self.wfile.write(body)

    def _html(self, status: int, text: str, **kw: Any) -> None:
        self._send(status, text.encode(), **kw)

    def _json(self, status: int, value: Any) -> None:
        self._send(status, pages.json_bytes(value), "application/json")

    def _redirect(self, where: str, cookies: list[str] | None = None) -> None:
        self._send(HTTPStatus.SEE_OTHER, b"", headers={"Location": where}, cookies=cookies)

    def _cookie(self, name: str, value: str, max_age: int) -> str:
        """Marked Secure when a TLS-terminating proxy says the browser used https."""
        return cookie(name, value, max_age, secure=self.headers.get("X-Forwarded-Proto") == "https")

    def _cookies(self) -> dict[str, str]:
        return parse_cookies(self.headers.get("Cookie"))

    def _session(self) -> Session | None:
        return self.board.sessions.get(self._cookies().get(SESSION_COOKIE))

    def _form(self) -> dict[str, str] | None:
        try:
            n = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return None
        if n > MAX_BODY:
            return None
        raw = self.rfile.read(n).decode("utf-8", "replace")
        return {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}

    def _page_kw(self, s: Session) -> dict[str, Any]:
        return {"user": s.user, "tenant": s.tenant, "csrf": s.csrf}

    def _unavailable(self, s: Session, exc: PlantstreamError) -> None:
        self._html(HTTPStatus.SERVICE_UNAVAILABLE,
                   pages.error_page("Archive unavailable", str(exc), **self._page_kw(s)))

    # ---- dispatch -------------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802 (http.server API)
        self._guarded(self._get)

    def do_POST(self) -> None:  # noqa: N802 (http.server API)
        self._guarded(self._post)

    def _guarded(self, handle: Any) -> None:
        """A bug in one page answers 500 and is logged; the board keeps serving."""
        try:
            handle()
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception:
            log.exception("request failed", extra={"path": urlsplit(self.path).path})
            try:
                self._html(HTTPStatus.INTERNAL_SERVER_ERROR, pages.error_page(
                    "Something went wrong", "The board could not show this page; the error is in its log."))
            except OSError:
                pass

    def _get(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        if url.path == "/health":
            return self._json(200, {"ok": True, "feed_ready": self.board.feed.ready.is_set()})
        if url.path.startswith("/static/"):
            return self._static(url.path.removeprefix("/static/"))
        if url.path == "/login":
            return self._login_form()
        s = self._session()
        if s is None:
            if url.path in ("/events",) or url.path.startswith("/api/"):
                return self._json(HTTPStatus.UNAUTHORIZED, {"error": "log in first"})
            return self._redirect("/login")
        try:
            if url.path == "/":
                return self._alerts(s, query)
            if url.path == "/alert":
                return self._alert(s, (query.get("id") or [""])[0], (query.get("sent") or [""])[0])
            if url.path == "/machines":
                return self._machines(s)
            if url.path == "/api/trend":
                return self._trend(s, (query.get("id") or [""])[0])
            if url.path == "/events":
                return self._events(s)
        except ArchiveUnavailable as exc:
            if url.path.startswith("/api/"):
                return self._json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": str(exc)})
            return self._unavailable(s, exc)
        self._html(HTTPStatus.NOT_FOUND, pages.error_page("Not found", "No such page.", **self._page_kw(s)))

    def _post(self) -> None:
        url = urlsplit(self.path)
        form = self._form()
        if form is None:
            return self._html(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                              pages.error_page("Too large", "Request too large."))
        if url.path == "/login":
            return self._login(form)
        s = self._session()
        if s is None:
            return self._redirect("/login")
        if not tokens_match(form.get("csrf"), s.csrf):
            return self._html(HTTPStatus.FORBIDDEN, pages.error_page(
                "Form expired", "The form's security token did not match; reload the page and try again.",
                **self._page_kw(s)))
        if url.path == "/logout":
            self.board.sessions.end(self._cookies().get(SESSION_COOKIE))
            return self._redirect("/login", cookies=[self._cookie(SESSION_COOKIE, "", 0)])
        if url.path == "/alert/command":
            return self._command(s, form)
        self._html(HTTPStatus.NOT_FOUND, pages.error_page("Not found", "No such page.", **self._page_kw(s)))

    # ---- pages ----------------------------------------------------------------------------
    def _static(self, name: str) -> None:
        path = (STATIC / name).resolve()
        if path.parent != STATIC or path.suffix not in STATIC_TYPES or not path.is_file():
            return self._send(HTTPStatus.NOT_FOUND, b"not found", "text/plain")
        self._send(200, path.read_bytes(), STATIC_TYPES[path.suffix])

    def _login_form(self, error: str = "", status: int = 200) -> None:
        token = self._cookies().get(LOGIN_COOKIE) or secrets.token_urlsafe(24)
        self._html(status, pages.login_page(token, error), cookies=[self._cookie(LOGIN_COOKIE, token, 3600)])

    def _login(self, form: dict[str, str]) -> None:
        if not tokens_match(form.get("csrf"), self._cookies().get(LOGIN_COOKIE)):
            return self._login_form("The login form expired; please try again.", HTTPStatus.FORBIDDEN)
        name = form.get("user", "")[:64]
        if self.board.throttle.blocked(name):
            return self._login_form("Too many failed logins for this name; wait a few minutes.",
                                    HTTPStatus.TOO_MANY_REQUESTS)
        try:
            user = self.board.users.authenticate(name, form.get("password", "")[:1024])
        except PlantstreamError as exc:
            log.error("user file unreadable", extra={"error": str(exc)})
            return self._login_form("The board's user file is broken; ask the operator.", 500)
        if user is None:
            self.board.throttle.failed(name)
            log.info("login refused", extra={"user": name})
            return self._login_form("Wrong name or password.", HTTPStatus.UNAUTHORIZED)
        self.board.throttle.succeeded(name)
        s = self.board.sessions.create(user.name, user.tenant)
        log.info("login", extra={"user": user.name, "tenant": user.tenant})
        self._redirect("/", cookies=[self._cookie(SESSION_COOKIE, s.token, int(self.board.sessions.lifetime)),
                                     self._cookie(LOGIN_COOKIE, "", 0)])

    def _alerts(self, s: Session, query: dict[str, list[str]]) -> None:
        f = Filters.from_query(query)
        every = list(self.board.current(s.tenant).values())
        shown = ordered(a for a in every if f.matches(a))
        self._html(200, pages.alerts_page(shown, every, f, now_us(), **self._page_kw(s)))

    def _find(self, s: Session, alert_id: str) -> dict[str, Any] | None:
        return self.board.current(s.tenant).get(alert_id) if alert_id else None

    def _alert(self, s: Session, alert_id: str, sent: str) -> None:
        a = self._find(s, alert_id)
        if a is None:  # unknown, or another tenant's: the same answer
            return self._html(HTTPStatus.NOT_FOUND, pages.error_page(
                "No such alert", f"There is no alert {alert_id}.", **self._page_kw(s)))
        arch = self.board.archive
        revs = {r["revision"]: r for r in arch.revisions(s.tenant, alert_id)}
        revs.setdefault(a["revision"], a)
        start, end, _ = trend_window(a["first_seen"], a["last_seen"], now_us())
        page = pages.alert_page(
            a, [revs[k] for k in sorted(revs)], arch.refused_commands(s.tenant, a),
            arch.anomalies(s.tenant, a["site"], a["machine"], start, end), now_us(), s.csrf, s.user,
            message=SENT.get(sent, "") and f"{SENT[sent]}; waiting for the maintenance service to apply it.",
            tenant=s.tenant)
        self._html(200, page)

    def _machines(self, s: Session) -> None:
        current = self.board.current(s.tenant)
        machines = {(m["site"], m["machine"]): m for m in self.board.archive.machines(s.tenant)}
        open_by: dict[tuple[str, str], dict[str, int]] = {}
        for a in current.values():
            key = (a["site"], a["machine"])
            machines.setdefault(key, {"site": a["site"], "machine": a["machine"], "last_seen": None,
                                      "episodes": 0})
            if a["state"] != "resolved":
                counts = open_by.setdefault(key, {})
                counts[a["severity"]] = counts.get(a["severity"], 0) + 1
        self._html(200, pages.machines_page([machines[k] for k in sorted(machines)], open_by, now_us(),
                                            **self._page_kw(s)))

    def _trend(self, s: Session, alert_id: str) -> None:
        a = self._find(s, alert_id)
        if a is None:
            return self._json(HTTPStatus.NOT_FOUND, {"error": "no such alert"})
        start, end, step = trend_window(a["first_seen"], a["last_seen"], now_us())
        series = self.board.archive.trend(s.tenant, a["site"], a["machine"], a["sensors"], start, end, step)
        limits = {k: v for k, v in a["evidence"].items() if k in ("limit", "warning_limit", "critical_limit")}
        self._json(200, {"series": series, "start": start // 1000, "end": end // 1000,
                         "first_seen": a["first_seen"] // 1000, "last_seen": a["last_seen"] // 1000,
                         "limits": limits})

    def _command(self, s: Session, form: dict[str, str]) -> None:
        wants_json = "application/json" in (self.headers.get("Accept") or "")
        alert_id, action = form.get("id", ""), form.get("action", "")

        def answer(status: int, message: str) -> None:
            if wants_json:
                return self._json(status, {"ok": status == 202, "message": message})
            if status == 202:
                return self._redirect(pages.alert_href(alert_id) + "&" + urlencode({"sent": action}))
            return self._html(status, pages.error_page("Command refused", message, **self._page_kw(s)))

        try:
            current = self._find(s, alert_id)
            now = now_us()
            until = parse_until(form["until"], now) if action == "silence" and form.get("until") else None
            comment = form.get("comment", "").strip()[:500] or None
            cmd = command_record(current, alert_id, action, actor_name(s.user, form.get("name", "")),
                                 comment, until, now)
            send_command(self.board.settings, cmd, as_tenant=s.tenant)
        except InvalidCommand as exc:
            return answer(HTTPStatus.CONFLICT, exc.detail)
        except ArchiveUnavailable as exc:
            return answer(HTTPStatus.SERVICE_UNAVAILABLE, str(exc))
        except PlantstreamError as exc:
            return answer(HTTPStatus.BAD_REQUEST, str(exc))
        log.info("command sent", extra={"user": s.user, "tenant": s.tenant, "alert_id": alert_id,
                                        "action": action, "command_id": cmd["command_id"]})
        answer(HTTPStatus.ACCEPTED, f"{SENT.get(action, action)}; waiting for the maintenance service.")

    def _events(self, s: Session) -> None:
        """Server-sent events: one ``alert`` event per new revision of the tenant's alerts."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Accel-Buffering", "no")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        sub = self.board.feed.subscribe(s.tenant)
        try:
            self.wfile.write(b"retry: 3000\nevent: ready\ndata: {}\n\n")
            self.wfile.flush()
            quiet_since = time.monotonic()
            while not self.board.stopping.is_set():
                if self.board.sessions.get(self._cookies().get(SESSION_COOKIE)) is None:
                    break  # logged out or expired: stop streaming
                if sub.overflowed:
                    self.wfile.write(b"event: reload\ndata: {}\n\n")
                    break
                try:
                    alert = sub.queue.get(timeout=1.0)
                except queue.Empty:
                    if time.monotonic() - quiet_since > KEEPALIVE_S:  # keeps proxies from closing it
                        self.wfile.write(b": keep-alive\n\n")
                        self.wfile.flush()
                        quiet_since = time.monotonic()
                    continue
                data = json.dumps(live_payload(alert), separators=(",", ":"))
                self.wfile.write(f"event: alert\ndata: {data}\n\n".encode())
                self.wfile.flush()
                quiet_since = time.monotonic()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the page was closed
        finally:
            self.board.feed.unsubscribe(sub)


class BoardServer:
    """The HTTP server plus the alert feed, started and stopped together."""

    def __init__(self, settings: Settings, address: str | None = None) -> None:
        host, _, port = (address or settings.board_address).rpartition(":")
        try:
            port_n = int(port)
        except ValueError:
            raise PlantstreamError(f"PLANTSTREAM_BOARD_ADDRESS={address!r}: use host:port") from None
        users_path = settings.board_users or settings.home / "board-users.yaml"
        self.board = Board(settings, Archive(settings), AlertFeed(settings), UserFile(users_path), Sessions(),
                           threading.Event(), LoginThrottle())
        handler = type("BoundHandler", (Handler,), {"board": self.board})
        self.httpd = ThreadingHTTPServer((host or "127.0.0.1", port_n), handler)
        self.httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> BoardServer:
        self.board.feed.start()
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="board-http", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self.board.feed.start()
        self.httpd.serve_forever()

    def stop(self) -> None:
        self.board.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.board.feed.stop()
