"""The Claude judge: the official anthropic SDK (Messages API), cached, retried, counted.

Retries and timeouts are the SDK's own (``max_retries``, ``timeout_s``): it retries 408/409/429
(honouring ``retry-after``), 529 overloaded and other 5xx, timeouts and dropped connections with
exponential backoff. Caching, de-duplication and failing fast are those of every API judge
(:mod:`lite.judge.api`); the client, the endpoint check and the error lines are those of
:mod:`lite.judge.messages_api`, the batches mode is :mod:`lite.judge.batches`. The key comes from
ANTHROPIC_API_KEY only and is never written anywhere; ANTHROPIC_BASE_URL (read by the SDK) points
the judge at a gateway or a test server. A reply without readable scores is asked once more (a
fresh call, cached under its own key and marked ``reask``) before it counts as unparseable.
Parallel judge jobs sharing the cache pay for a prompt once: a call in flight holds a claim on
its key (:meth:`JudgeCache.claim`).
"""

from __future__ import annotations

import time

import anthropic

from lite.judge import messages_api
from lite.judge.api import ApiJudge
from lite.judge.batches import run_batches
from lite.judge.settings import ClaudeSettings

# How often a job waiting on another job's claim looks for its cache entry.
CLAIM_POLL_S = 0.2


class ClaudeJudge(ApiJudge):
    """Implements :class:`lite.judge.protocol.Judge` with Claude and the pairwise prompt."""

    NAME = "claude"
    SDK = "anthropic"
    reasks_unparseable = True

    def __init__(self, settings: ClaudeSettings, client: anthropic.Anthropic | None = None):
        super().__init__(settings)
        self.client = client if client is not None else messages_api.make_client(settings)
        # The header the client really sends (the SDK's default unless the settings chose one).
        self.api_version = str(self.client.default_headers["anthropic-version"])
        # The longest one call can take (every attempt timing out, plus the SDK's backoff of at
        # most 8 s between attempts): a claim older than that, from another host, is abandoned.
        self.claim_lifetime_s = (settings.max_retries + 1) * (settings.timeout_s + 8.0) + 60.0

    @property
    def mode(self) -> str:
        return "batches" if self.config.batches else "messages"

    def endpoint_identity(self) -> dict:
        return {"api_version": self.api_version}

    def request(self, content: str) -> dict:
        params = {
            "model": self.config.model,
            "max_tokens": self.config.max_tokens,
            "messages": [{"role": "user", "content": content}],
        }
        if self.prompt.system is not None:
            params["system"] = self.prompt.system
        return params

    def check_endpoint(self) -> None:
        messages_api.check_endpoint(self.client, self.config.model)

    def key_rejected(self, url: str, detail: str) -> str:
        return messages_api.key_rejected(url, detail)

    def unreachable(self, url: str, detail: str) -> str:
        return messages_api.unreachable(url, detail)

    def answer(self, pending: dict[str, tuple[dict, dict]]) -> tuple[dict, dict]:
        if self.config.batches:
            return run_batches(self, pending)
        return super().answer(pending)

    def call(self, key: str, identity: dict, request: dict) -> tuple[dict, bool]:
        # The entry may come from another job that held the key's claim.
        while not self.cache.claim(key, self.claim_lifetime_s):
            time.sleep(CLAIM_POLL_S)
            entry = self.cache.get(key)
            if entry is not None:
                return entry, False
        try:
            entry = self.cache.get(key)  # the last holder may have finished just before the claim
            if entry is not None:
                return entry, False
            sampling = self.config.sampling_params
            # Sampling parameters are no longer SDK arguments; extra_body sends them for old API versions.
            try:
                message = self.client.messages.create(
                    **request, **({"extra_body": sampling} if sampling else {})
                )
            except anthropic.APIError as err:
                raise messages_api.call_failed(err) from None
            entry = messages_api.entry_from_message(message, identity, "messages")
            self.cache.put(key, entry)  # persisted before anything else can go wrong
            return entry, True
        finally:
            self.cache.release(key)
