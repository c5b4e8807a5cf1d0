"""A local HTTP server that speaks the OpenAI chat completions API (``/v1/chat/completions``, ``/v1/models``).

The second judge (lite.judge.openai_compat, through the openai SDK) is pointed at it through its
``base_url``, as at a local vLLM or llama.cpp server. It answers like the API does: the same JSON
bodies for chat completions, model lists and errors (``{"error": {"message", "type", "param",
"code"}}``), and checks requests as the API does: a bearer key when ``expected_key`` is set (401
``invalid_api_key`` otherwise), a JSON body with ``model`` and a non-empty ``messages`` list of
``role``/``content`` objects (400 ``invalid_request_error`` naming the parameter), a known model
when ``models`` is set (404 ``model_not_found``), ``max_tokens`` / ``max_completion_tokens`` a
positive integer, ``temperature`` within 0..2, and no unknown parameter (400 "Unrecognized
request argument supplied: <name>").

``POST /v1/chat/completions`` is the scripted endpoint (``scripted_api_server``); by default the
reply gives scores from the answers' word counts, as the Messages API test server does.

    with OpenAIServer(expected_key="sk-test") as server:
        client = openai.OpenAI(api_key="sk-test", base_url=server.base_url)
"""

from __future__ import annotations

import json
import time
import uuid

from messages_api_server import default_answer
from scripted_api_server import ScriptedHandler, ScriptedServer

KNOWN_PARAMS = {
    "model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "n", "stop",
    "stream", "seed", "presence_penalty", "frequency_penalty", "logprobs", "top_logprobs", "user",
    "response_format", "tools", "tool_choice", "logit_bias", "stream_options", "reasoning_effort",
}  # fmt: skip
ERRORS = {
    400: ("invalid_request_error", None, "Invalid request"),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("request_forbidden", "unsupported_country_region_territory",
          "Country, region, or territory not supported"),
    404: ("invalid_request_error", "model_not_found",
          "The model does not exist or you do not have access to it."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests. Please try again in 20ms."),
    500: ("server_error", None, "The server had an error while processing your request. Sorry about that!"),
    503: ("server_error", None, "The engine is currently overloaded, please try again later"),
}  # fmt: skip


class OpenAIServer(ScriptedServer):
    scripted_path = "/v1/chat/completions"

    def __init__(self, answer=None, expected_key: str | None = None, models: list[str] | None = None):
        self.models = models  # when set, any other model gets a 404
        super().__init__(_Handler, answer or default_answer, expected_key)

    @property
    def base_url(self) -> str:
        """What a client is configured with: the URL up to and including /v1."""
        return self.url + "/v1"

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


class _Handler(ScriptedHandler):
    api: OpenAIServer

    def identity_headers(self) -> dict:
        return {"x-request-id": "req_" + uuid.uuid4().hex[:24], "openai-processing-ms": "1"}

    def _send_error(self, status: int, message: str | None = None, headers=None, param=None, **fields):
        """The API's error body for ``status``; ``fields`` replace its defaults (``code=None``)."""
        kind, code, default = ERRORS.get(status, ("server_error", None, "Internal server error"))
        error = {"message": message or default, "type": kind, "param": param, "code": code, **fields}
        self._send_json(status, {"error": error}, headers)

    def _begin(self, method: str) -> dict | None:
        auth = self.headers.get("authorization")
        presented = auth[7:] if auth and auth.startswith("Bearer ") else None
        entry = self._log_request(method, presented, "Bearer" if presented else None)
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
            self._send_error(404, f"Invalid URL (GET {entry['path']})", code=None)

    def do_POST(self):
        entry = self._begin("POST")
        if entry is None:
            return
        if entry["path"] != "/v1/chat/completions":
            self._send_error(404, f"Invalid URL (POST {entry['path']})", code=None)
            return
        problem = self.api.validate(entry["body"])
        if problem is not None:
            status, message, param = problem
            entry["action"] = "invalid"
            self._send_error(status, message, param=param)
            return
        self._play_script(entry, lambda text: self.api.completion(entry["body"], text))
