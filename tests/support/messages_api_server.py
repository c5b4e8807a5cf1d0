"""A local HTTP server that speaks the Anthropic Messages API, Message Batches and models endpoints.

Tests point the real anthropic SDK at it (``base_url`` or ANTHROPIC_BASE_URL). It answers like the
API does, with the same JSON bodies for messages, batches and errors, and checks requests as the
API does: a key (``Authorization: Bearer`` or ``x-api-key``), an ``anthropic-version`` header,
``model``/``max_tokens``/``messages`` in the body, and, from version 2026-10-21 on, a 400
``invalid_request_error`` "<param>: Extra inputs are not permitted" for ``temperature``,
``top_p`` or ``top_k``.

``POST /v1/messages`` is the scripted endpoint (``scripted_api_server``); by default the reply is
"s1 s2" from the answers' word counts.

    with MessagesAPIServer() as server:
        client = anthropic.Anthropic(api_key="test", base_url=server.url)

or, in a test, ``with sdk_server(monkeypatch, key) as server:`` for a judge that finds the server
the way a gateway is found (ANTHROPIC_BASE_URL).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import re
import uuid

import anthropic._base_client
from scripted_api_server import ScriptedHandler, ScriptedServer

SAMPLING_PARAMS = ("temperature", "top_p", "top_k")
NO_SAMPLING_SINCE = "2026-10-21"
_ANSWER = re.compile(
    r"\[The Start of Assistant (\d)'s Answer\]\n(.*?)\n\n\[The End of Assistant \1's Answer\]", re.DOTALL
)


ERROR_TYPES = {
    400: ("invalid_request_error", "Invalid request"),
    401: ("authentication_error", "invalid x-api-key"),
    404: ("not_found_error", "Not found"),
    429: ("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit"),
    500: ("api_error", "Internal server error"),
    529: ("overloaded_error", "Overloaded"),
}


def answers(body: dict) -> tuple[str, str]:
    """(Assistant 1's answer, Assistant 2's answer) as the pairwise prompt of a request shows them."""
    content = body["messages"][-1]["content"]
    if isinstance(content, list):
        content = "".join(block.get("text", "") for block in content)
    found = dict(_ANSWER.findall(content))
    return found.get("1", ""), found.get("2", "")


def default_answer(body: dict) -> str:
    """Scores from the answers' word counts (order-independent, so consistent in both orders)."""
    scores = [min(10, 1 + len(answer.split())) for answer in answers(body)]
    return f"{scores[0]} {scores[1]}\nAssistant 1 and Assistant 2 were rated by length."


def _iso(moment: datetime.datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _request_id() -> str:
    return "req_" + uuid.uuid4().hex[:24]


class MessagesAPIServer(ScriptedServer):
    scripted_path = "/v1/messages"

    def __init__(self, answer=None, expected_key: str | None = None):
        self.batches: dict[str, dict] = {}
        self.batch_polls_to_end = 0  # retrieves a batch answers "in_progress" before it ends
        super().__init__(_Handler, answer or default_answer, expected_key)

    def log_lines(self) -> list[dict]:
        """A readable request log: method, path, status, version, model, params; prompt digest only."""
        lines = []
        with self.lock:
            for r in self.requests:
                body = r.get("body") if isinstance(r.get("body"), dict) else {}
                line = {
                    "n": r["n"],
                    "method": r["method"],
                    "path": r["path"],
                    "status": r.get("status"),
                    "action": r.get("action"),
                    "anthropic_version": r["anthropic_version"],
                    "auth": r["auth"],
                }
                if "model" in body:
                    line["model"] = body["model"]
                    line["max_tokens"] = body.get("max_tokens")
                    line["sampling"] = {k: body[k] for k in SAMPLING_PARAMS if k in body}
                if "requests" in body:
                    line["batch_requests"] = len(body["requests"])
                lines.append(line)
        return lines

    def write_log(self, path) -> None:
        with open(path, "w", encoding="utf-8") as handle:
            for line in self.log_lines():
                handle.write(json.dumps(line) + "\n")

    # ------------------------------------------------------------------ API behaviour
    def message(self, body: dict, text: str) -> dict:
        content = json.dumps(body.get("messages", ""))
        return {
            "id": "msg_" + uuid.uuid4().hex[:24],
            "type": "message",
            "role": "assistant",
            "model": body["model"] + "-20990101" if not body["model"][-8:].isdigit() else body["model"],
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {
                "input_tokens": max(1, len(content) // 4),
                "output_tokens": max(1, len(text) // 4),
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "service_tier": "standard",
            },
        }

    def validate(self, body, version: str) -> str | None:
        """The API's 400 message for an invalid Messages request body, or None."""
        if not isinstance(body, dict):
            return "body: Input should be a valid dictionary"
        for field in ("model", "max_tokens", "messages"):
            if field not in body:
                return f"{field}: Field required"
        if not isinstance(body["max_tokens"], int) or body["max_tokens"] < 1:
            return "max_tokens: Input should be greater than or equal to 1"
        if not isinstance(body["messages"], list) or not body["messages"]:
            return "messages: at least one message is required"
        if version >= NO_SAMPLING_SINCE:
            for name in SAMPLING_PARAMS:
                if name in body:
                    return f"{name}: Extra inputs are not permitted"
        return None

    def model_info(self, model: str) -> dict:
        """GET /v1/models/<id>: every model id is known here."""
        return {"type": "model", "id": model, "display_name": model, "created_at": "2099-01-01T00:00:00Z"}

    def batch_view(self, batch: dict) -> dict:
        ended = batch["ended_at"] is not None
        counts = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        if ended:
            for result in batch["results"]:
                counts[result["result"]["type"]] += 1
        else:
            counts["processing"] = len(batch["requests"])
        return {
            "id": batch["id"],
            "type": "message_batch",
            "processing_status": "ended" if ended else "in_progress",
            "request_counts": counts,
            "created_at": batch["created_at"],
            "expires_at": batch["expires_at"],
            "ended_at": batch["ended_at"],
            "archived_at": None,
            "cancel_initiated_at": None,
            "results_url": f"{self.url}/v1/messages/batches/{batch['id']}/results" if ended else None,
        }

    def end_batch(self, batch: dict) -> None:
        results = []
        for request in batch["requests"]:
            problem = self.validate(request.get("params"), batch["version"])
            if problem is None:
                message = self.message(request["params"], self.answer(request["params"]))
                result = {"type": "succeeded", "message": message}
            else:
                result = {
                    "type": "errored",
                    "error": {
                        "type": "error",
                        "error": {"type": "invalid_request_error", "message": problem},
                        "request_id": _request_id(),
                    },
                }
            results.append({"custom_id": request["custom_id"], "result": result})
        batch["results"] = results
        batch["ended_at"] = _iso(datetime.datetime.now(datetime.UTC))


@contextlib.contextmanager
def sdk_server(monkeypatch, key: str):
    """A running server that the anthropic SDK reaches through its own environment variables
    (ANTHROPIC_BASE_URL, ANTHROPIC_API_KEY = ``key``), the SDK's backoff shrunk so that retries take
    milliseconds (retry-after is still honoured)."""
    monkeypatch.setattr(anthropic._base_client, "INITIAL_RETRY_DELAY", 0.01)
    monkeypatch.setattr(anthropic._base_client, "MAX_RETRY_DELAY", 0.05)
    with MessagesAPIServer(expected_key=key) as api:
        monkeypatch.setenv("ANTHROPIC_API_KEY", key)
        monkeypatch.setenv("ANTHROPIC_BASE_URL", api.url)
        monkeypatch.delenv("ANTHROPIC_AUTH_TOKEN", raising=False)
        yield api


class _Handler(ScriptedHandler):
    api: MessagesAPIServer

    def identity_headers(self) -> dict:
        return {"request-id": _request_id()}

    def _send_error(self, status: int, message: str | None = None, headers: dict | None = None):
        kind, default = ERROR_TYPES.get(status, ("api_error", "Internal server error"))
        body = {
            "type": "error",
            "error": {"type": kind, "message": message or default},
            "request_id": _request_id(),
        }
        self._send_json(status, body, headers)

    def _begin(self, method: str) -> dict | None:
        auth = self.headers.get("authorization")
        api_key = self.headers.get("x-api-key")
        presented = auth[7:] if auth and auth.startswith("Bearer ") else api_key
        scheme = "Bearer" if auth else ("x-api-key" if api_key else None)
        entry = self._log_request(
            method, presented, scheme, anthropic_version=self.headers.get("anthropic-version")
        )
        if presented is None or entry["key_matches"] is False:
            self._send_error(401)
            return None
        if entry["anthropic_version"] is None:
            self._send_error(400, "anthropic-version: header is required")
            return None
        return entry

    def do_POST(self):
        entry = self._begin("POST")
        if entry is None:
            return
        path = entry["path"]
        if path == "/v1/messages":
            self._messages(entry)
        elif path == "/v1/messages/batches":
            self._create_batch(entry)
        elif re.fullmatch(r"/v1/messages/batches/[^/]+/cancel", path):
            self._send_error(400, "cancel is not supported by this test server")
        else:
            self._send_error(404, f"no route for POST {path}")

    def do_GET(self):
        entry = self._begin("GET")
        if entry is None:
            return
        path = entry["path"]
        match = re.fullmatch(r"/v1/messages/batches/([^/]+)(/results)?", path)
        model = re.fullmatch(r"/v1/models/([^/]+)", path)
        if model:
            entry["action"] = "model"
            self._send_json(200, self.api.model_info(model.group(1)))
        elif path == "/v1/messages/batches":
            with self.api.lock:
                data = [self.api.batch_view(b) for b in self.api.batches.values()]
            self._send_json(200, {"data": data, "has_more": False, "first_id": None, "last_id": None})
        elif match:
            self._batch(entry, match.group(1), results=match.group(2) is not None)
        else:
            self._send_error(404, f"no route for GET {path}")

    # ------------------------------------------------------------------ endpoints
    def _messages(self, entry: dict):
        body = entry["body"]
        problem = self.api.validate(body, entry["anthropic_version"])
        if problem is not None:
            entry["action"] = "invalid"
            self._send_error(400, problem)
            return
        self._play_script(entry, lambda text: self.api.message(body, text))

    def _create_batch(self, entry: dict):
        body = entry["body"]
        requests = body.get("requests") if isinstance(body, dict) else None
        if not isinstance(requests, list) or not requests:
            self._send_error(400, "requests: Field required")
            return
        seen = set()
        for request in requests:
            custom_id = request.get("custom_id")
            if not isinstance(custom_id, str) or not re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", custom_id):
                self._send_error(400, f"requests.custom_id: invalid {custom_id!r}")
                return
            if custom_id in seen:
                self._send_error(400, f"requests: custom_id {custom_id!r} is not unique")
                return
            seen.add(custom_id)
            if "params" not in request:
                self._send_error(400, "requests.params: Field required")
                return
        now = datetime.datetime.now(datetime.UTC)
        batch = {
            "id": "msgbatch_" + uuid.uuid4().hex[:24],
            "requests": requests,
            "version": entry["anthropic_version"],
            "created_at": _iso(now),
            "expires_at": _iso(now + datetime.timedelta(hours=24)),
            "ended_at": None,
            "polls": 0,
            "results": [],
        }
        with self.api.lock:
            self.api.batches[batch["id"]] = batch
            view = self.api.batch_view(batch)
        entry["action"] = "batch-created"
        self._send_json(200, view)

    def _batch(self, entry: dict, batch_id: str, results: bool):
        with self.api.lock:
            batch = self.api.batches.get(batch_id)
            if batch is not None and not results:
                batch["polls"] += 1
                if batch["ended_at"] is None and batch["polls"] > self.api.batch_polls_to_end:
                    self.api.end_batch(batch)
            view = self.api.batch_view(batch) if batch is not None else None
        if batch is None:
            self._send_error(404, f"message batch {batch_id} not found")
            return
        if not results:
            entry["action"] = view["processing_status"]
            self._send_json(200, view)
            return
        if batch["ended_at"] is None:
            self._send_error(400, "results are available only once the batch has ended")
            return
        lines = "".join(json.dumps(r) + "\n" for r in batch["results"]).encode("utf-8")
        entry["action"] = "results"
        self._send_json(200, lines, content_type="application/binary")
