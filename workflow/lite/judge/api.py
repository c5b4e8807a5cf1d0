"""What the API judges (Claude, any OpenAI-compatible endpoint) share: cached, de-duplicated,
parallel calls that fail fast.

A judge asks each distinct prompt once and only when the cache lacks it, checks the endpoint with
one free request before its first paid call, makes the calls ``concurrency`` at a time and stops
at the first rejected key or after ``MAX_CONNECTION_FAILURES`` calls in a row found no server
(each after all its retries): without this a dead endpoint costs every call its full retry
budget. A call that still fails is recorded in the judgment (``error``) and counted, never
cached, so the next run retries it. Each judge brings its requests, its endpoint check and one
call (:meth:`ApiJudge.call`).
"""

from __future__ import annotations

import abc
import datetime
import logging
import sys
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from tqdm import tqdm

from lite.judge.cache import JudgeCache, call_key
from lite.judge.cost import RunStats
from lite.judge.parsing import parse_scores
from lite.judge.prompts import load_prompt
from lite.judge.protocol import Ask, Reply
from lite.judge.settings import JudgeSettings, JudgeUnavailable

log = logging.getLogger(__name__)

# Calls in a row that found no server (after their retries) before a run gives up.
MAX_CONNECTION_FAILURES = 3


def now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def connection_detail(err: Exception) -> str:
    """An SDK's connection error as one line, for a call that found no server."""
    # The SDKs' own message is only "Connection error."; the cause says refused, DNS or timeout.
    cause = f": {err.__cause__}" if err.__cause__ is not None else ""
    return f"{type(err).__name__}{cause}"


class CallFailed(Exception):
    """A call that failed for good (after retries, or at once for a final error); the message is
    what the judgment records. ``key_rejected``: the endpoint refused the key; ``unreachable``:
    why no server answered, for a failed connection."""

    def __init__(self, message: str, *, key_rejected: bool = False, unreachable: str | None = None):
        super().__init__(message)
        self.key_rejected = key_rejected
        self.unreachable = unreachable


class ApiJudge(abc.ABC):
    """Implements :class:`lite.judge.protocol.Judge` for a model behind an API.

    Subclasses set the class attributes below and ``client`` (an HTTP client with its
    ``base_url``), and implement the abstract methods.
    """

    NAME: str  # the judge's name in records, paths and the cost table
    SDK: str  # the distribution that makes its calls; the resolved config records its version
    mode: str  # the cost table's mode column
    api_version: str | None
    # Ask once more, in a fresh call, when a reply's scores cannot be read.
    reasks_unparseable: bool

    def __init__(self, settings: JudgeSettings):
        self.config = settings
        self.prompt = load_prompt(settings.prompt)
        self.cache = JudgeCache(settings.cache_dir)
        self.stats = RunStats()
        self._endpoint_checked = False

    def settings(self) -> dict:
        return {
            "name": self.NAME,
            "model": self.config.model,
            "api_version": self.api_version,
            "prompt": self.prompt.name,
            "prompt_version": self.prompt.version,
            "sampling": self.config.sampling_params,
            "max_tokens": self.config.max_tokens,
        }

    # ------------------------------------------------------------------ per judge
    @abc.abstractmethod
    def endpoint_identity(self) -> dict:
        """What besides the prompt and the model makes a call distinct (API, version, endpoint)."""

    @abc.abstractmethod
    def request(self, content: str) -> dict:
        """The request body that asks ``content`` (the rendered prompt)."""

    @abc.abstractmethod
    def check_endpoint(self) -> None:
        """One free request: raise ``JudgeUnavailable`` when the endpoint does not answer or
        rejects the key."""

    @abc.abstractmethod
    def call(self, key: str, identity: dict, request: dict) -> tuple[dict, bool]:
        """(cache entry, paid) of one call, the entry already cached; raises ``CallFailed``."""

    @abc.abstractmethod
    def key_rejected(self, url: str, detail: str) -> str:
        """Why the run stops when the endpoint at ``url`` rejected the key (``detail``: its answer)."""

    @abc.abstractmethod
    def unreachable(self, url: str, detail: str) -> str:
        """Why the run stops when no server answered at ``url`` (``detail``: the connection error)."""

    # ------------------------------------------------------------------ shared
    def call_for(self, ask: Ask) -> tuple[str, dict, dict]:
        """(cache key, identity, request) of one ask."""
        content = self.prompt.render(ask.question, ask.answer_1, ask.answer_2)
        identity = {
            **self.endpoint_identity(),
            "model": self.config.model,
            "prompt": self.prompt.name,
            "prompt_version": self.prompt.version,
            "prompt_sha256": self.prompt.sha256,
            "system": self.prompt.system,
            "content": content,
            "sampling": self.config.sampling_params,
            "max_tokens": self.config.max_tokens,
        }
        return call_key(identity), identity, self.request(content)

    def judge(self, asks: list[Ask]) -> list[Reply]:
        calls = [self.call_for(ask) for ask in asks]
        # Identical prompts (two systems giving the same answer) are asked once.
        unique: dict[str, tuple[dict, dict]] = {}
        for key, identity, request in calls:
            unique.setdefault(key, (identity, request))
        self.stats = RunStats(asks=len(asks), unique_calls=len(unique))
        entries: dict[str, dict] = {}
        for key in unique:
            entry = self.cache.get(key)
            if entry is not None:
                entries[key] = entry
                self.count_cached(entry)
        pending = {key: value for key, value in unique.items() if key not in entries}
        errors: dict[str, str] = {}
        if pending:
            self.check_endpoint_once()
            new, errors = self.answer(pending)
            entries.update(new)
        reasks = self._reask_unparseable(unique, entries) if self.reasks_unparseable else {}
        replies = []
        for key, _, _ in calls:
            entry = entries.get(key)
            if entry is None:
                replies.append(Reply(text=None, error=errors.get(key, "no result")))
            elif key in reasks:
                again = reasks[key]
                replies.append(Reply(text=again["text"], model=again["model"], first_text=entry["text"]))
            else:
                replies.append(Reply(text=entry["text"], model=entry["model"]))
        return replies

    def answer(self, pending: dict[str, tuple[dict, dict]]) -> tuple[dict, dict]:
        """(entries, errors) by key for the calls not in the cache; Claude's batches mode differs."""
        return self.call_all(pending)

    def count_cached(self, entry: dict) -> None:
        self.stats.cached += 1
        self.stats.cached_usage.add(entry["usage"], batch=entry["mode"] == "batch")

    def check_endpoint_once(self) -> None:
        if not self._endpoint_checked:
            self.check_endpoint()
            self._endpoint_checked = True

    def _reask_unparseable(self, unique: dict[str, tuple[dict, dict]], entries: dict[str, dict]) -> dict:
        """key -> the entry of a second, fresh call, for each reply whose scores could not be read.

        The second call has its own identity (``reask: 1``), so it is cached apart from the first
        reply and is made once: a rerun finds both. Re-asks are single calls in every mode (a
        handful of them; a second batch would hold up the run for hours). A failed re-ask leaves
        the first reply in the record and is tried again by the next run.
        """
        wanted: dict[str, tuple[str, dict, dict]] = {}
        for key, entry in entries.items():
            if not parse_scores(entry["text"]).parsed:
                identity, request = unique[key]
                again = {**identity, "reask": 1}
                wanted[key] = (call_key(again), again, request)
        found: dict[str, dict] = {}
        pending: dict[str, tuple[dict, dict]] = {}
        for key, (again_key, again, request) in wanted.items():
            entry = self.cache.get(again_key)
            if entry is None:
                pending[again_key] = (again, request)
            else:
                found[key] = entry
        if pending:
            log.info("asking %d unparseable judgment(s) once more", len(pending))
            self.check_endpoint_once()
            made = self.stats.calls_made
            new, _ = self.call_all(pending)
            self.stats.reasks += self.stats.calls_made - made
            for key, (again_key, _, _) in wanted.items():
                if again_key in new:
                    found[key] = new[again_key]
        return found

    def call_all(self, pending: dict[str, tuple[dict, dict]]) -> tuple[dict, dict]:
        """(entries, errors) by key of ``pending`` (key -> (identity, request)), ``concurrency`` calls
        at a time; raises ``JudgeUnavailable`` when the key is rejected or no server answers."""
        entries: dict[str, dict] = {}
        errors: dict[str, str] = {}
        queue = deque(pending.items())
        running: dict[Future, str] = {}
        pool = ThreadPoolExecutor(max_workers=self.config.concurrency, thread_name_prefix="judge")
        bar = tqdm(total=len(queue), desc=f"judge {self.config.model}", unit="call", file=sys.stderr)
        url = str(self.client.base_url)
        stop, connection_failures = None, 0
        try:
            # Submit only as many calls as there are workers, so an interrupt leaves nothing queued.
            while (queue and stop is None) or running:
                while queue and stop is None and len(running) < self.config.concurrency:
                    key, (identity, request) = queue.popleft()
                    running[pool.submit(self.call, key, identity, request)] = key
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    key = running.pop(future)
                    try:
                        entry, paid = future.result()
                    except CallFailed as err:
                        errors[key] = str(err)
                        self.stats.calls_failed += 1
                        log.warning("judge call failed after retries: %s", err)
                        if err.key_rejected:
                            stop = stop or self.key_rejected(url, str(err))
                        elif err.unreachable is not None:
                            connection_failures += 1
                            if connection_failures >= MAX_CONNECTION_FAILURES:
                                failed = f"; {connection_failures} calls in a row failed"
                                stop = stop or self.unreachable(url, err.unreachable) + failed
                        else:
                            connection_failures = 0
                    else:
                        connection_failures = 0
                        entries[key] = entry
                        if paid:
                            self.stats.calls_made += 1
                            self.stats.new.add(entry["usage"], batch=False)
                        else:  # another job paid for it while this one waited on its claim
                            self.count_cached(entry)
                    bar.update(1)
                    bar.set_postfix(failed=self.stats.calls_failed)
        finally:
            bar.close()
            pool.shutdown(wait=True, cancel_futures=True)
        if stop is not None:
            raise JudgeUnavailable(f"{stop}; {len(queue)} call(s) not sent")
        return entries, errors
