"""What the local API test servers (``messages_api_server``, ``openai_api_server``) share.

A threaded HTTP server on 127.0.0.1 whose answers to one endpoint (a chat or message call) can be
scripted: ``server.script`` is a queue of actions consumed one per request (``ok(text)``,
``error(status, retry_after)``, ``slow(seconds)``, ``drop()``, ``hold()``); when it is empty the
reply comes from ``server.answer(body) -> str``. Every request is logged in ``server.requests``
with how its key came, never the key. Each API brings its handler: routes, validation, reply and
error bodies.
"""

from __future__ import annotations

import abc
import collections
import itertools
import json
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


# ----------------------------------------------------------------------------- scripted actions
def ok(text: str) -> dict:
    return {"kind": "ok", "text": text}


def error(status: int, retry_after: float | None = None) -> dict:
    return {"kind": "error", "status": status, "retry_after": retry_after}


def slow(seconds: float, text: str | None = None) -> dict:
    """Answer only after ``seconds`` (longer than the client's timeout: the client gives up first)."""
    return {"kind": "slow", "seconds": seconds, "text": text}


def drop() -> dict:
    """Read the request, then close the connection without any response."""
    return {"kind": "drop"}


def hold() -> dict:
    """Never answer until the server stops (stands for a call in flight when a run is killed)."""
    return {"kind": "hold"}


class ScriptedServer:
    scripted_path: str  # the endpoint whose answers the script decides

    def __init__(
        self, handler: type[ScriptedHandler], answer: Callable[[dict], str], expected_key: str | None = None
    ):
        self.answer = answer
        self.expected_key = expected_key  # when set, any other key gets a 401
        self.script: collections.deque = collections.deque()
        self.requests: list[dict] = []  # every request, in arrival order
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self._ids = itertools.count(1)
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), type("Handler", (handler,), {"api": self}))
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self):
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()  # releases held and slow handlers
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def calls(self, path: str | None = None, method: str = "POST") -> list[dict]:
        """The logged requests to ``path`` (default: the scripted endpoint) by ``method``."""
        path = path or self.scripted_path
        with self.lock:
            return [r for r in self.requests if r["path"] == path and r["method"] == method]

    def wait_for(self, predicate, timeout: float = 20.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.02)
        return False


class ScriptedHandler(BaseHTTPRequestHandler, abc.ABC):
    api: ScriptedServer
    protocol_version = "HTTP/1.1"
    timeout = 10  # idle keep-alive connections close on their own

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    @abc.abstractmethod
    def identity_headers(self) -> dict:
        """The API's own response headers (a request id and the like)."""

    @abc.abstractmethod
    def _send_error(self, status: int, message: str | None = None, headers: dict | None = None) -> None:
        """The API's error body for ``status``."""

    def _send_json(self, status: int, payload, headers: dict | None = None, content_type="application/json"):
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(data)))
        for name, value in {**self.identity_headers(), **(headers or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
        self._entry["status"] = status

    def _log_request(self, method: str, presented: str | None, scheme: str | None, **fields) -> dict:
        """Read the body and log the request; ``presented`` is the key it came with, by ``scheme``."""
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            body = "<invalid json>"
        entry = {
            "n": next(self.api._ids),
            "time": time.time(),
            "method": method,
            "path": self.path.split("?")[0],
            **fields,
            # The log keeps how the key came, never the key.
            "auth": f"{scheme} <redacted>" if scheme else None,
            "key_matches": None if self.api.expected_key is None else presented == self.api.expected_key,
            "body": body,
            "status": None,
            "action": None,
        }
        with self.api.lock:
            self.api.requests.append(entry)
        self._entry = entry
        return entry

    def _play_script(self, entry: dict, reply: Callable[[str], dict]) -> None:
        """Answer the scripted endpoint with the script's next action, else with ``api.answer``;
        ``reply(text)`` is the API's success body."""
        body = entry["body"]
        with self.api.lock:
            action = self.api.script.popleft() if self.api.script else None
        entry["action"] = action["kind"] if action else "answer"
        if action is None or action["kind"] == "ok":
            self._send_json(200, reply(action["text"] if action else self.api.answer(body)))
        elif action["kind"] == "error":
            headers = {}
            if action["retry_after"] is not None:
                headers["retry-after"] = str(action["retry_after"])
            self._send_error(action["status"], headers=headers)
        elif action["kind"] == "slow":
            self.api.stopping.wait(action["seconds"])
            text = action["text"] if action["text"] is not None else self.api.answer(body)
            try:
                self._send_json(200, reply(text))
            except OSError:  # the client timed out and closed the connection first
                pass
        elif action["kind"] == "drop":
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        elif action["kind"] == "hold":
            self.api.stopping.wait()
            self.close_connection = True
