"""The rating page ``lite annotate`` serves: the standard library's HTTP server, no JavaScript.

A rater signs in with a name and rates one item at a time: the instruction and two responses,
called Response 1 and Response 2 in the order drawn for that rater. No system name, item id or
file name is ever sent to the browser. Each response gets a whole score from 1 to 10 (the
paper's scale), or the item is skipped. The page works from the keyboard alone: the first score
field has focus, Tab moves on, Enter saves and loads the next item, Alt+S skips, Alt+B goes back.

Every form carries the session's CSRF token; the session cookie is HttpOnly and SameSite=Strict.
An item that is not the signed-in rater's is refused (403), and so is a score outside 1..10
(400, the page shown again with the error), before anything is written. Forms are plain HTML
forms, so the server checks everything itself: the browser's own checks are only a convenience.
"""

from __future__ import annotations

import html
import logging
import threading
import urllib.parse
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from lite.human.store import Assignment, Refused, Session, Store

log = logging.getLogger(__name__)

COOKIE = "lite_rater"
COOKIE_MAX_AGE = 30 * 24 * 3600  # a rater who closes the browser comes back signed in
MAX_BODY = 16 * 1024  # a rating form is a few hundred bytes
HEADERS = {
    "Cache-Control": "no-store",  # the back button must not show a page with a stale CSRF token
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

CSS = """
body { font: 16px/1.5 system-ui, sans-serif; margin: 0; background: #f6f6f4; color: #1d1d1d; }
main { max-width: 72rem; margin: 0 auto; padding: 1rem 1.5rem 3rem; }
header { display: flex; flex-wrap: wrap; gap: 1rem; align-items: center; justify-content: space-between; }
header form { margin: 0; }
h1 { font-size: 1.3rem; margin: .5rem 0; }
h2 { font-size: 1.05rem; margin: 0 0 .5rem; }
progress { width: 100%; height: .6rem; }
.text { white-space: pre-wrap; background: #fff; border: 1px solid #ccc; border-radius: 6px;
        padding: .75rem 1rem; overflow-wrap: anywhere; }
.responses { display: grid; grid-template-columns: 1fr 1fr; gap: 1rem; margin-top: 1rem; }
@media (max-width: 50rem) { .responses { grid-template-columns: 1fr; } }
.score { margin-top: .5rem; font-weight: 600; }
.score input { width: 4.5rem; font-size: 1.1rem; padding: .2rem .4rem; margin-left: .5rem; }
.actions { display: flex; gap: .75rem; align-items: center; margin-top: 1rem; }
button, .button { font-size: 1rem; padding: .45rem 1rem; border-radius: 6px; border: 1px solid #555;
                  background: #fff; color: inherit; text-decoration: none; cursor: pointer; }
button.primary { background: #1d4ed8; border-color: #1d4ed8; color: #fff; }
:focus-visible { outline: 3px solid #f59e0b; outline-offset: 2px; }
.error { background: #fee2e2; border: 1px solid #b91c1c; color: #7f1d1d; padding: .5rem 1rem;
         border-radius: 6px; }
.hint { color: #555; font-size: .9rem; }
kbd { border: 1px solid #999; border-radius: 3px; padding: 0 .3rem; background: #fff; font-size: .85rem; }
"""


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def page(title: str, body: str) -> str:
    return (
        "<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{CSS}</style></head>"
        f"<body><main>{body}</main></body></html>\n"
    )


def error_box(message: str | None) -> str:
    return f"<p class=error role=alert id=error>{_e(message)}</p>" if message else ""


def sign_in_page(study: str, message: str | None = None, name: str = "") -> str:
    body = f"""
<h1>{_e(study)}: rate responses</h1>
<p>You will see an instruction and two responses to it. Give each response an overall score
from 1 (poor) to 10 (excellent) for its helpfulness, relevance, accuracy and level of detail.
Your ratings are saved as you go; sign in with the same name to carry on later.</p>
{error_box(message)}
<form method=post action=/signin>
<p><label for=name>Your name</label>
<input id=name name=name required autofocus autocomplete=username maxlength=40 value="{_e(name)}">
<button class=primary type=submit>Start</button></p>
</form>"""
    return page(f"{study}: sign in", body)


def rating_page(
    study: str,
    session: Session,
    item: Assignment,
    progress,
    back: int | None,
    message: str | None = None,
    typed: tuple[str, str] | None = None,
) -> str:
    if typed is None:
        typed = tuple("" if s is None else str(s) for s in (item.score_1, item.score_2))
    question = _e(item.instruction) + (f"\n\n{_e(item.input)}" if item.input.strip() else "")
    states = {None: "", True: " (skipped earlier)", False: " (rated earlier; saving replaces it)"}
    state = states[item.skipped]
    back_link = f'<a class=button href="/rate?item={back}" accesskey=b>Back</a>' if back is not None else ""
    responses = "".join(
        f"""
<section aria-labelledby=r{k}>
<h2 id=r{k}>Response {k}</h2>
<div class=text>{_e(text)}</div>
<p class=score><label for=score_{k}>Score for Response {k} (1-10)</label>
<input id=score_{k} name=score_{k} type=number inputmode=numeric min=1 max=10 step=1 required
 {"autofocus " if k == 1 else ""}value="{_e(typed[k - 1])}"></p>
</section>"""
        for k, text in ((1, item.response_1), (2, item.response_2))
    )
    body = f"""
<header>
<h1>{_e(study)}: item {item.position} of {progress.total}{state}</h1>
<form method=post action=/signout><input type=hidden name=csrf value="{_e(session.csrf)}">
Signed in as <strong>{_e(session.rater)}</strong> <button type=submit>Sign out</button></form>
</header>
<p id=progress>{progress.rated} rated, {progress.skipped} skipped, {progress.total - progress.done} to go</p>
<progress max="{progress.total}" value="{progress.done}" aria-labelledby=progress></progress>
{error_box(message)}
<section aria-labelledby=q><h2 id=q>Instruction</h2><div class=text>{question}</div></section>
<form method=post action=/rate id=rate>
<input type=hidden name=csrf value="{_e(session.csrf)}">
<input type=hidden name=item value="{item.number}">
<div class=responses>{responses}</div>
<p class=actions>
<button class=primary type=submit name=action value=rate accesskey=n>Save and next</button>
<button type=submit name=action value=skip formnovalidate accesskey=s>Skip</button>
{back_link}</p>
</form>
<p class=hint>Keyboard: type a score, <kbd>Tab</kbd> to the next field, <kbd>Enter</kbd> saves and
shows the next item. <kbd>Alt</kbd>+<kbd>S</kbd> skips, <kbd>Alt</kbd>+<kbd>B</kbd> goes back
(<kbd>Alt</kbd>+<kbd>Shift</kbd> in Firefox).</p>"""
    return page(f"{study}: item {item.position} of {progress.total}", body)


def done_page(study: str, session: Session, progress, last: int | None) -> str:
    review = f'<a class=button href="/rate?item={last}" accesskey=b>Review your last item</a>' if last else ""
    body = f"""
<header><h1>{_e(study)}: all done</h1>
<form method=post action=/signout><input type=hidden name=csrf value="{_e(session.csrf)}">
Signed in as <strong>{_e(session.rater)}</strong> <button type=submit>Sign out</button></form></header>
<p id=progress>Thank you. You rated {progress.rated} and skipped {progress.skipped} of {progress.total} items.
Every rating is saved.</p>
<p>{review}</p>"""
    return page(f"{study}: done", body)


def refused_page(study: str, status: int, message: str) -> str:
    body = f"""<h1>{_e(study)}: {status} {_e(HTTPStatus(status).phrase)}</h1>
{error_box(message)}<p><a class=button href="/">Back to the rating page</a></p>"""
    return page(f"{study}: {HTTPStatus(status).phrase}", body)


class AnnotationServer:
    """Serves the rating page for one ratings database; port 0 picks a free port.

    with AnnotationServer(store, study="vicuna") as server:
        print(server.url)
    """

    def __init__(self, store: Store, *, study: str, host: str = "127.0.0.1", port: int = 0):
        self.store = store
        self.study = study  # the page's heading: the eval set, never a system
        handler = type("Handler", (_Handler,), {"app": self})
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{port}/"

    def serve_forever(self) -> None:
        self.httpd.serve_forever(poll_interval=0.1)

    def start(self) -> AnnotationServer:
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> AnnotationServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class _Handler(BaseHTTPRequestHandler):
    app: AnnotationServer
    protocol_version = "HTTP/1.1"
    timeout = 30  # idle keep-alive connections close on their own
    server_version = "lite-annotate"
    sys_version = ""

    def log_message(self, format, *args) -> None:  # noqa: A002 (the base class's name)
        log.debug("%s %s", self.address_string(), format % args)

    # ------------------------------------------------------------------ plumbing
    def _send(self, status: int, body: str = "", headers: dict | None = None) -> None:
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in {**HEADERS, **(headers or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _redirect(self, location: str, cookie: str | None = None) -> None:
        headers = {"Location": location}
        if cookie is not None:
            headers["Set-Cookie"] = cookie
        self._send(HTTPStatus.SEE_OTHER, "", headers)

    def _refuse(self, status: int, message: str) -> None:
        self._send(status, refused_page(self.app.study, status, message))

    def _token(self) -> str | None:
        try:
            cookie = SimpleCookie(self.headers.get("Cookie") or "")
        except CookieError:
            return None
        morsel = cookie.get(COOKIE)
        return morsel.value if morsel else None

    def _session(self) -> Session | None:
        return self.app.store.session(self._token())

    def _form(self) -> dict[str, str] | None:
        """The posted form (first value per field), or None after answering a bad body."""
        kind = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY:
            self.close_connection = True
            self._refuse(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "the form is too large")
            return None
        raw = self.rfile.read(length) if length else b""
        if kind != "application/x-www-form-urlencoded":
            self._refuse(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "send the form as the rating page does")
            return None
        fields = urllib.parse.parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True)
        return {name: values[0] for name, values in fields.items()}

    # ------------------------------------------------------------------ routes
    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        try:
            if url.path == "/":
                session = self._session()
                if session is None:
                    self._send(HTTPStatus.OK, sign_in_page(self.app.study))
                else:
                    self._redirect("/rate")
            elif url.path == "/rate":
                session = self._session()
                if session is None:
                    self._redirect("/")
                    return
                query = urllib.parse.parse_qs(url.query)
                number = query["item"][0] if "item" in query else None
                self._show(session, number)
            else:
                self._refuse(HTTPStatus.NOT_FOUND, "no such page")
        except Refused as err:
            self._refuse(err.status, err.message)

    def do_POST(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        if path not in ("/signin", "/rate", "/signout"):
            self._refuse(HTTPStatus.NOT_FOUND, "no such page")
            return
        form = self._form()
        if form is None:
            return
        try:
            if path == "/signin":
                self._sign_in(form)
                return
            session = self._session()
            if session is None:
                raise Refused(HTTPStatus.UNAUTHORIZED, "you are not signed in (or your session ended)")
            self.app.store.check_csrf(session, form.get("csrf"))
            if path == "/signout":
                self.app.store.sign_out(self._token())
                self._redirect("/", f"{COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict")
            else:
                self._rate(session, form)
        except Refused as err:
            self._refuse(err.status, err.message)

    def _sign_in(self, form: dict[str, str]) -> None:
        name = form.get("name", "")
        try:
            token, _ = self.app.store.sign_in(name)
        except Refused as err:
            self._send(err.status, sign_in_page(self.app.study, err.message, name))
            return
        cookie = f"{COOKIE}={token}; Path=/; Max-Age={COOKIE_MAX_AGE}; HttpOnly; SameSite=Strict"
        self._redirect("/rate", cookie)

    def _show(self, session: Session, number, message=None, typed=None, status=HTTPStatus.OK) -> None:
        store = self.app.store
        progress = store.progress(session.rater)
        rater = session.rater
        item = store.next_assignment(rater) if number is None else store.assignment(rater, number)
        if item is None:
            last = store.neighbour(session.rater, progress.total + 1, -1)
            self._send(HTTPStatus.OK, done_page(self.app.study, session, progress, last))
            return
        back = store.neighbour(session.rater, item.position, -1)
        self._send(status, rating_page(self.app.study, session, item, progress, back, message, typed))

    def _rate(self, session: Session, form: dict[str, str]) -> None:
        store = self.app.store
        number = form.get("item")
        # Ownership first: a forged item number is refused outright, never echoed in a form.
        store.assignment(session.rater, number)
        if form.get("action") == "skip":
            store.skip(session.rater, number)
        else:
            typed = (form.get("score_1", ""), form.get("score_2", ""))
            try:
                store.rate(session.rater, number, *typed)
            except Refused as err:
                if err.status != HTTPStatus.BAD_REQUEST:
                    raise
                self._show(session, number, err.message, typed, HTTPStatus.BAD_REQUEST)
                return
        self._redirect("/rate")
