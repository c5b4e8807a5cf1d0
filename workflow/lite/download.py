"""Pinned source files: fetch one by URL (or from a local copy), verify its checksum, then keep it.

    lite download --source alpaca --out results/data/sources/alpaca_data.json
    lite download --source alpaca --out results/data/sources/alpaca_data.json --local-path COPY.json

Every source is pinned to a commit and a checksum, so a run on a cluster in a year reads the same
bytes as one today. A file reaches its destination only after its checksum matched: it is written
to a temp file beside the destination and renamed, so a failed or interrupted download never
leaves a file that looks finished. Offline clusters pass ``local_path`` (a copy made elsewhere),
which is verified the same way. Nothing here imports torch.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from lite.io import InputError, SetupError, atomic_path, require_file, where

_CHUNK = 1 << 20
# What a user without network does instead of downloading (the flag differs per command).
OFFLINE_HINT = (
    "on a machine without network, copy the file there and give its path (`path:` of the data "
    "source in the workflow config, --path of lite prepare-train / prepare-eval, --local-path of "
    "lite download); it is checked against the same pinned checksum"
)


class DownloadError(SetupError, RuntimeError):
    """A source could not be fetched (network, HTTP status, unreadable local copy)."""


class ChecksumError(DownloadError):
    """The fetched bytes are not the pinned ones; nothing was written to the destination."""


@dataclass(frozen=True)
class PinnedSource:
    name: str
    url: str
    # "sha256:<64 hex>" or "gitblob:<40 hex>" (the id `git hash-object` prints: sha1 of
    # b"blob <size>\0" + content), for files whose sha256 was never published.
    checksum: str
    format: str  # the loader in lite.datasets that reads it (a key of TRAIN_SOURCES / EVAL_SOURCES)
    filename: str  # the upstream file name, a sensible default for --out
    license: str
    records: int  # what its loader reads from the pinned file: a cut or padded copy is caught

    def __post_init__(self):
        kind, _, digest = self.checksum.partition(":")
        lengths = {"sha256": 64, "gitblob": 40}
        if kind not in lengths:
            raise ValueError(f"PinnedSource.checksum: {self.checksum!r} must start with sha256: or gitblob:")
        if len(digest) != lengths[kind] or any(c not in "0123456789abcdef" for c in digest):
            raise ValueError(
                f"PinnedSource.checksum: {self.checksum!r} is not {lengths[kind]} lower-case hex digits"
            )
        if self.records < 1:
            raise ValueError(f"PinnedSource.records: must be >= 1, got {self.records}")


_RAW = "https://raw.githubusercontent.com"

# Each URL names the upstream commit; the checksum and record count are those of the file fetched
# from that URL when it was pinned.
SOURCES: dict[str, PinnedSource] = {
    source.name: source
    for source in (
        PinnedSource(
            "alpaca",
            f"{_RAW}/tatsu-lab/stanford_alpaca/761dc5bfbdeeffa89b8bff5d038781a4055f796a/alpaca_data.json",
            "gitblob:3779ddbc040543ab1834ef216c983d6fcc06cc9a",
            "alpaca",
            "alpaca_data.json",
            "CC BY-NC 4.0 (data)",
            52_002,
        ),
        PinnedSource(
            "vicuna",
            f"{_RAW}/lm-sys/FastChat/69d085eadab8e9fcf831a97e17e132658c3d2272/fastchat/eval/table/question.jsonl",
            "sha256:590c39157bc561eadd7f03cad4be18c2b597f93029780af65f86718f39eafa87",
            "vicuna",
            "question.jsonl",
            "Apache-2.0",
            80,
        ),
        PinnedSource(
            "vicuna_bench",
            f"{_RAW}/lm-sys/FastChat/0e6d3e4beaab66f4d3f93db72541a4abab8af28d"
            "/fastchat/llm_judge/data/vicuna_bench/question.jsonl",
            "sha256:c248c5c98ba45bb0c2aadae2f270e643bd32679c6c306a3b2a503ac4254cdaa5",
            "vicuna",
            "question.jsonl",
            "Apache-2.0",
            80,
        ),
        PinnedSource(
            "koala",
            f"{_RAW}/arnav-gudibande/koala-test-set/2d4396aee3cff495382e9b0ad2521d70b177763b/koala_test_set.jsonl",
            "sha256:c8cda5c53810dc30aad34fabbb828fe3eba0957119e00916650c971905d19886",
            "koala",
            "koala_test_set.jsonl",
            "Apache-2.0; README: academic use, not for training",
            180,
        ),
        PinnedSource(
            "wizardlm",
            f"{_RAW}/nlpxucan/WizardLM/cd4b4cc022b6426aee62d51f7ae99a4a6ec9aaef/WizardLM/data/WizardLM_testset.jsonl",
            "sha256:e216ec20538a7040b908f654f1f767305460f0a71f01b3db9f3989c8a78f8245",
            "wizardlm",
            "WizardLM_testset.jsonl",
            "CC BY-NC 4.0 (data)",
            218,
        ),
        PinnedSource(
            "selfinstruct",
            f"{_RAW}/yizhongw/self-instruct/0b26ccaa415992100fa32df62d41b994cf928e23"
            "/human_eval/user_oriented_instructions.jsonl",
            "sha256:81d60a117db495cecedecd9193504fd07c5b5a42f6699ef6b0f9da10fc22f42e",
            "selfinstruct",
            "user_oriented_instructions.jsonl",
            "Apache-2.0; README: not for training",
            252,
        ),
    )
}


def get_source(name: str) -> PinnedSource:
    if name not in SOURCES:
        raise InputError(f"unknown source {name!r}; choose from {', '.join(SOURCES)}")
    return SOURCES[name]


def git_blob_sha1(path: str | os.PathLike) -> str:
    """The id ``git hash-object FILE`` prints: sha1 over ``b"blob <size>\\0"`` + the content."""
    path = Path(path)
    digest = hashlib.sha1(b"blob %d\0" % path.stat().st_size)
    _update_from_file(digest, path)
    return digest.hexdigest()


def checksum_of(path: str | os.PathLike, kind: str) -> str:
    """``"<kind>:<hex>"`` of a file, kind ``sha256`` or ``gitblob``."""
    if kind == "gitblob":
        return f"gitblob:{git_blob_sha1(path)}"
    if kind == "sha256":
        digest = hashlib.sha256()
        _update_from_file(digest, Path(path))
        return f"sha256:{digest.hexdigest()}"
    raise ValueError(f"unknown checksum kind {kind!r}; expected sha256 or gitblob")


def fetch(
    source: PinnedSource | str,
    dest: str | os.PathLike,
    local_path: str | os.PathLike | None = None,
    timeout: float = 60.0,
) -> Path:
    """Put the pinned file at ``dest`` (from ``source.url``, or from ``local_path`` if given).

    Raises ``ChecksumError`` (expected vs. got) when the bytes differ from the pin and
    ``DownloadError`` when they cannot be fetched; in both cases ``dest`` is left as it was.
    """
    if isinstance(source, str):
        source = get_source(source)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dest) as tmp:
        with open(tmp, "wb") as out:
            if local_path is not None:
                origin = str(local_path)
                _copy_local(Path(local_path), out)
            else:
                origin = source.url
                _download(source, out, timeout)
            out.flush()
            os.fsync(out.fileno())
        kind = source.checksum.partition(":")[0]
        got = checksum_of(tmp, kind)
        if got != source.checksum:
            raise ChecksumError(
                f"{source.name}: checksum mismatch for {origin}: expected {source.checksum}, got {got} "
                f"({tmp.stat().st_size} bytes); nothing was written to {dest}"
            )
    return dest


def verify_pinned(source: PinnedSource | str, path: str | os.PathLike) -> None:
    """Raise ``ChecksumError`` unless ``path`` holds exactly the bytes ``source`` is pinned to.

    For a local copy named in the config or on the command line: a cut, edited or re-encoded copy
    of a known set would otherwise give other results under the same name.
    """
    if isinstance(source, str):
        source = get_source(source)
    require_file(path, f"source {source.name!r}")
    got = checksum_of(path, source.checksum.partition(":")[0])
    if got != source.checksum:
        raise ChecksumError(
            f"{path}: not the pinned {source.name} file (expected {source.checksum}, got {got}, "
            f"{Path(path).stat().st_size} bytes); use an unmodified copy of {source.url}, or, for data "
            "of your own, set `verify: false` on the data source (--no-verify)"
        )


def _copy_local(path: Path, out) -> None:
    if not path.is_file():
        raise InputError(f"{where(path)}: local copy not found (--local-path)")
    with open(path, "rb") as handle:
        shutil.copyfileobj(handle, out, _CHUNK)


def _download(source: PinnedSource, out, timeout: float) -> None:
    request = urllib.request.Request(source.url, headers={"User-Agent": "lite-workflow"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            total = response.headers.get("Content-Length")
            with tqdm(
                total=int(total) if total else None,
                unit="B",
                unit_scale=True,
                desc=f"download {source.name}",
                file=sys.stderr,
            ) as bar:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as err:
        raise DownloadError(f"{source.name}: {source.url} answered HTTP {err.code} {err.reason}") from None
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise DownloadError(
            f"{source.name}: could not download {source.url}: {reason}; {OFFLINE_HINT}"
        ) from None


def _update_from_file(digest, path: Path) -> None:
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)


def pinned_file(name: str, download_dir: str | os.PathLike) -> Path:
    """The verified local copy of pinned source ``name`` under ``download_dir``, fetched if missing.

    A copy already there is re-checked (cheap next to a download) and fetched again on mismatch.
    """
    source = get_source(name)
    dest = Path(download_dir) / f"{source.name}.{source.filename}"
    kind = source.checksum.partition(":")[0]
    if dest.is_file() and checksum_of(dest, kind) == source.checksum:
        return dest
    return fetch(source, dest)
