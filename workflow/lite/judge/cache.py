"""A crash-safe cache of judge calls: one file per paid call, written the moment it returns.

Each call is keyed by the SHA-256 of its full identity (model, API version, prompt name, version
and digest, system prompt, rendered prompt, sampling settings, max_tokens), so a rerun with the
same settings pays nothing and a change to any of them is a new key. Files are written atomically
(temp file + rename), so a kill at any moment leaves every finished call readable and no half
file; one file per key also lets parallel judge jobs share one cache directory. A call in flight
is visible to the other jobs as a claim file beside its entry (created exclusively), so two jobs
needing the same prompt pay for it once: the second waits for the first one's entry. A claim of a
process that is gone (same host: its pid has ended; another host: older than the longest a call
can take) is taken over. The API key is never part of an entry.

Layout: ``<dir>/<key[:2]>/<key>.json`` (claim: ``<key>.claim``); batches in flight:
``<dir>/batches/<batch id>.json``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import threading
import time
from pathlib import Path

from lite.io import read_json, write_json

log = logging.getLogger(__name__)


def call_key(identity: dict) -> str:
    """Hex SHA-256 of the canonical JSON of a call's identity (64 chars: also a valid batch custom_id)."""
    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class JudgeCache:
    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        # Entries this object wrote, from the judge's worker threads too (what an interrupted run kept).
        self.entries_written = 0
        self._count_lock = threading.Lock()

    def path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict | None:
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            entry = read_json(path)
        except (OSError, ValueError) as err:
            # Atomic writes make this unexpected; treat as a miss rather than trusting a bad entry.
            log.warning("ignoring unreadable cache entry %s (%s)", path, err)
            return None
        return entry if entry.get("key") == key else None

    def put(self, key: str, entry: dict) -> None:
        write_json(self.path(key), {**entry, "key": key})
        with self._count_lock:
            self.entries_written += 1

    def claim_path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.claim"

    def claim(self, key: str, stale_after_s: float) -> bool:
        """Claim the call ``key`` for this process; False while another live process holds it."""
        path = self.claim_path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "claimed_at": time.time()}
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            if not self._abandoned(path, stale_after_s):
                return False
            # Two jobs taking over the same abandoned claim at once could both call: one extra
            # call, only after a crash, against a lock protocol this simple.
            log.warning("taking over the claim %s of a process that is gone", path)
            path.unlink(missing_ok=True)
            return self.claim(key, stale_after_s)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(holder, handle)
        return True

    def release(self, key: str) -> None:
        self.claim_path(key).unlink(missing_ok=True)

    @staticmethod
    def _abandoned(path: Path, stale_after_s: float) -> bool:
        try:
            holder = json.loads(path.read_text(encoding="utf-8"))
            pid, host, claimed_at = int(holder["pid"]), holder["host"], float(holder["claimed_at"])
        except FileNotFoundError:
            return True  # released meanwhile
        except (OSError, ValueError, KeyError, TypeError):
            # Being written this very moment, or damaged: judge by the file's age alone.
            try:
                return time.time() - path.stat().st_mtime > stale_after_s
            except FileNotFoundError:
                return True
        if host == socket.gethostname():
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            except PermissionError:
                return False  # alive, another user's
            return False
        return time.time() - claimed_at > stale_after_s

    @property
    def batch_dir(self) -> Path:
        return self.directory / "batches"
