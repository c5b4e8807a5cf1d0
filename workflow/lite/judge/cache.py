"""A crash-safe cache of judge calls: one file per paid call, written the moment it returns.

Each call is keyed by the SHA-256 of its full identity (model, API version, prompt name, version
and digest, system prompt, rendered prompt, sampling settings, max_tokens), so a rerun with the
same settings pays nothing and a change to any of them is a new key. Files are written atomically
(temp file + rename), so a kill at any moment leaves every finished call readable and no half
file; one file per key also lets parallel judge jobs share one cache directory without locks.
The API key is never part of an entry.

Layout: ``<dir>/<key[:2]>/<key>.json``; batches in flight: ``<dir>/batches/<batch id>.json``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
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

    @property
    def batch_dir(self) -> Path:
        return self.directory / "batches"
