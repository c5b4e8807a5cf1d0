"""A local HTTP server that speaks the OpenAI chat completions API (``/v1/chat/completions``, ``/v1/models``).

The second judge (lite.judge.openai_compat) is pointed at it through its ``base_url``, as at a
local vLLM or llama.cpp server. It answers like the API does: the same JSON bodies for chat
completions, model lists and errors (``{"error": {"message", "type", "param", "code"}}``), and
checks requests as the API does: a bearer key when ``expected_key`` is set (401
``invalid_api_key`` otherwise), a JSON body with ``model`` and a non-empty ``messages`` list of
``role``/``content`` objects (400 ``invalid_request_error`` naming the parameter), a known model
when ``models`` is set (404 ``model_not_found``), ``max_tokens`` / ``max_completion_tokens`` a
positive integer, ``temperature`` within 0..2, and no unknown parameter (400 "Unrecognized
request argument supplied: <name>").

Scripting ``POST /v1/chat/completions``: ``server.script`` is a queue of actions consumed one per
request (``ok(text)``, ``error(status, retry_after)``, ``drop()``); when it is empty the reply
comes from ``server.answer(body) -> str`` (default: scores from the answers' word counts, as the
Messages API test server gives). Every request is logged in ``server.requests`` (how the key
came, never the key).

    with OpenAIServer(expected_key="sk-test") as server:
        httpx.post(server.url + "/v1/chat/completions", ...)
"""

from __future__ import annotations

import collections
import itertools
import json
import socket
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from messages_api_server import default_answer

KNOWN_PARAMS = {
    "model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "n", "stop",
    "stream", "seed", "presence_penalty", "frequency_penalty", "logprobs", "top_logprobs", "user",
    "response_format", "tools", "tool_choice", "logit_bias", "stream_options", "reasoning_effort",
}  # fmt: skip
ERRORS = {
    400: ("invalid_request_error", None, "Invalid request"),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("invalid_request_error", "unsupported_country_region_territory",
          "Country, region, or territory not supported"),
    404: ("invalid_request_error", "model_not_found",
          "The model does not exist or you do not have access to it."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests. Please try again in 20ms."),
    500: ("server_error", None, "The server had an error while processing your request. Sorry about that!"),
    503: ("server_error", None, "The engine is currently overloaded, please try again later"),
}  # fmt: skip


def ok(text: str) -> dict:
    return {"kind": "ok", "text": text}


def error(status: int, retry_after: float | None = None) -> dict:
    return {"kind": "error", "status": status, "retry_after": retry_after}


def drop() -> dict:
    """Read the request, then close the connection without any response."""
    return {"kind": "drop"}


class OpenAIServer:
    def __init__(self, answer=None, expected_key: str | None = None, models: list[str] | None = None):
        self.answer = answer or default_answer
        self.expected_key = expected_key  # when set, any other key (or none) gets a 401
        self.models = models  # when set, any other model gets a 404
        self.script: collections.deque = collections.deque()
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self._ids = itertools.count(1)
        handler = type("Handler", (_Handler,), {"api": self})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def base_url(self) -> str:
        """What a client is configured with: the URL up to and including /v1."""
        return self.url + "/v1"

    def start(self) -> OpenAIServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> OpenAIServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def calls(self, path: str = "/v1/chat/completions") -> list[dict]:
        with self.lock:
            return [r for r in self.requests if r["path"] == path]

    def validate(self, body) -> tuple[int, str, str | None] | None:
        """(status, message, param) of the API's error for an invalid request body, or None."""
        if not isinstance(body, dict):
            return 400, "We could not parse the JSON body of your request.", None
        for name in body:
            if name not in KNOWN_PARAMS:
                return 400, f"Unrecognized request argument supplied: {name}", name
        if "model" not in body:
            return 400, "you must provide a model parameter", "model"
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return 400, "[] is too short - 'messages'", "messages"
        for index, message in enumerate(messages):
            if not isinstance(message, dict) or message.get("role") not in ("system", "user", "assistant"):
                return 400, f"Invalid value for 'messages[{index}].role'", f"messages[{index}].role"
            if not isinstance(message.get("content"), str):
                return 400, f"Invalid type for 'messages[{index}].content'", f"messages[{index}].content"
        for name in ("max_tokens", "max_completion_tokens"):
            if name in body and (not isinstance(body[name], int) or body[name] < 1):
                return 400, f"Invalid '{name}': integer below minimum value.", name
        temperature = body.get("temperature", 1)
        if not isinstance(temperature, (int, float)) or not 0 <= temperature <= 2:
            return 400, "Invalid 'temperature': decimal above maximum value.", "temperature"
        if self.models is not None and body["model"] not in self.models:
            return 404, f"The model `{body['model']}` does not exist or you do not have access to it.", None
        return None

    def completion(self, body: dict, text: str) -> dict:
        prompt = json.dumps(body["messages"])
        model = body["model"]
        return {
            "id": "chatcmpl-" + uuid.uuid4().hex[:29],
            "object": "chat.completion",
            "created": int(time.time()),
            # The API answers with the dated snapshot the alias resolved to.
            "model": model if model[-10:-6] == "2099" else f"{model}-2099-01-01",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text, "refusal": None, "annotations": []},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": max(1, len(prompt) // 4),
                "completion_tokens": max(1, len(text) // 4),
                "total_tokens": max(1, len(prompt) // 4) + max(1, len(text) // 4),
            },
            "service_tier": "default",
            "system_fingerprint": "fp_test",
        }


class _Handler(BaseHTTPRequestHandler):
    api: OpenAIServer
    protocol_version = "HTTP/1.1"
    timeout = 10

    def log_message(self, *args) -> None:
        pass

    def _send_json(self, status: int, payload: dict, headers: dict | None = None) -> None:
        data = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.send_header("x-request-id", "req_" + uuid.uuid4().hex[:24])
        self.send_header("openai-processing-ms", "1")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
        self._entry["status"] = status

    def _send_error(self, status: int, message: str | None = None, param=None, headers=None) -> None:
        kind, code, default = ERRORS.get(status, ("server_error", None, "Internal server error"))
        body = {"error": {"message": message or default, "type": kind, "param": param, "code": code}}
        self._send_json(status, body, headers)

    def _begin(self, method: str) -> dict | None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            body = "<invalid json>"
        auth = self.headers.get("authorization")
        presented = auth[7:] if auth and auth.startswith("Bearer ") else None
        entry = {
            "n": next(self.api._ids),
            "method": method,
            "path": self.path.split("?")[0],
            "auth": "Bearer <redacted>" if presented else None,
            "key_matches": None if self.api.expected_key is None else presented == self.api.expected_key,
            "body": body,
            "status": None,
            "action": None,
        }
        with self.api.lock:
            self.api.requests.append(entry)
        self._entry = entry
        if self.api.expected_key is not None and not entry["key_matches"]:
            message = (
                "You didn't provide an API key. You need to provide your API key in an Authorization header "
                "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
                if presented is None
                else "Incorrect API key provided. You can find your API key at your account's API keys page."
            )
            self._send_error(401, message)
            return None
        return entry

    def do_GET(self):
        entry = self._begin("GET")
        if entry is None:
            return
        if entry["path"] == "/v1/models":
            models = self.api.models or ["gpt-test"]
            data = [{"id": m, "object": "model", "created": 0, "owned_by": "test"} for m in models]
            self._send_json(200, {"object": "list", "data": data})
        else:
            self._send_error(404, f"Invalid URL (GET {entry['path']})")

    def do_POST(self):
        entry = self._begin("POST")
        if entry is None:
            return
        if entry["path"] != "/v1/chat/completions":
            self._send_error(404, f"Invalid URL (POST {entry['path']})")
            return
        problem = self.api.validate(entry["body"])
        if problem is not None:
            status, message, param = problem
            entry["action"] = "invalid"
            self._send_error(status, message, param)
            return
        with self.api.lock:
            action = self.api.script.popleft() if self.api.script else None
        entry["action"] = action["kind"] if action else "answer"
        if action is None or action["kind"] == "ok":
            text = action["text"] if action else self.api.answer(entry["body"])
            self._send_json(200, self.api.completion(entry["body"], text))
        elif action["kind"] == "error":
            headers = {}
            if action["retry_after"] is not None:
                headers["retry-after"] = str(action["retry_after"])
            self._send_error(action["status"], headers=headers)
        elif action["kind"] == "drop":
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
