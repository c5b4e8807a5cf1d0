"""Pinned downloads against a local HTTP server on 127.0.0.1 (never the internet)."""

from __future__ import annotations

import hashlib
import http.server
import re
import shutil
import socket
import subprocess
import threading

import pytest

from lite import cli, datasets, download
from lite.download import (
    SOURCES,
    ChecksumError,
    DownloadError,
    PinnedSource,
    checksum_of,
    fetch,
    git_blob_sha1,
    pinned_file,
)
from lite.io import InputError, read_json

PAYLOAD = b'{"id": "koala_0", "prompt": "Hi?"}\n{"id": "koala_1", "prompt": "Why?"}\n'


@pytest.fixture
def server():
    """A local HTTP server: files served from a dict; ``hits`` counts requests per path."""
    files: dict[str, bytes] = {"/koala.jsonl": PAYLOAD}
    hits: dict[str, int] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the name http.server dispatches to
            hits[self.path] = hits.get(self.path, 0) + 1
            body = files.get(self.path)
            if body is None:
                self.send_error(404, "Not Found")
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):  # keep test output quiet
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", files, hits
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def _source(url: str, checksum: str) -> PinnedSource:
    return PinnedSource("koala", url, checksum, "koala", "koala_test_set.jsonl", "test", 2)


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir())


def test_fetch_verifies_and_renames(server, tmp_path):
    base, _, hits = server
    dest = tmp_path / "sub" / "koala.jsonl"
    assert fetch(_source(f"{base}/koala.jsonl", _sha256(PAYLOAD)), dest) == dest
    assert dest.read_bytes() == PAYLOAD
    assert _leftovers(dest.parent) == ["koala.jsonl"]  # no temp file left behind
    assert hits == {"/koala.jsonl": 1}
    # the downloaded bytes load as Koala records
    assert [r["id"] for r in datasets.load_koala(dest)] == ["koala_0", "koala_1"]


def test_fetch_git_blob_checksum(server, tmp_path):
    base, files, _ = server
    files["/alpaca_data.json"] = b"hello\n"
    # `git hash-object` of "hello\n" is a well-known id
    source = _source(f"{base}/alpaca_data.json", "gitblob:ce013625030ba8dba906f756967f9e9ca394464a")
    dest = fetch(source, tmp_path / "a.json")
    assert dest.read_bytes() == b"hello\n"


def test_git_blob_sha1_matches_git(tmp_path):
    path = tmp_path / "blob.bin"
    path.write_bytes(bytes(range(256)) * 50)
    expected = hashlib.sha1(b"blob 12800\0" + path.read_bytes()).hexdigest()
    assert git_blob_sha1(path) == expected
    if shutil.which("git") is not None:  # cross-check with git itself where it is installed
        assert subprocess.run(
            ["git", "hash-object", str(path)], capture_output=True, text=True
        ).stdout.strip() == (expected)
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert checksum_of(empty, "gitblob") == "gitblob:e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
    assert checksum_of(empty, "sha256") == _sha256(b"")


def test_mismatch_leaves_no_file(server, tmp_path):
    base, _, _ = server
    wrong = _sha256(b"other bytes")
    dest = tmp_path / "koala.jsonl"
    with pytest.raises(ChecksumError) as err:
        fetch(_source(f"{base}/koala.jsonl", wrong), dest)
    message = str(err.value)
    assert f"expected {wrong}" in message and f"got {_sha256(PAYLOAD)}" in message
    assert f"{base}/koala.jsonl" in message
    assert _leftovers(tmp_path) == []
    # an earlier, good file under the same name is kept as it was
    dest.write_bytes(b"previous")
    with pytest.raises(ChecksumError):
        fetch(_source(f"{base}/koala.jsonl", wrong), dest)
    assert dest.read_bytes() == b"previous" and _leftovers(tmp_path) == ["koala.jsonl"]


def test_http_error_and_connection_error(server, tmp_path):
    base, _, _ = server
    with pytest.raises(DownloadError, match="HTTP 404"):
        fetch(_source(f"{base}/missing.jsonl", _sha256(PAYLOAD)), tmp_path / "x.jsonl")
    # a port nothing listens on: bind, note the port, close
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/koala.jsonl"
    with pytest.raises(DownloadError) as err:
        fetch(_source(url, _sha256(PAYLOAD)), tmp_path / "x.jsonl", timeout=5)
    assert f"could not download {url}" in str(err.value)
    assert "refused" in str(err.value).lower() and "--local-path of lite download" in str(err.value)
    # the prepare commands and the workflow take the copy under their own names
    assert "`path:` of the data source" in str(err.value) and "--path of lite prepare" in str(err.value)
    assert _leftovers(tmp_path) == []


def test_local_copy_verified_the_same_way(tmp_path):
    copy = tmp_path / "copy.jsonl"
    copy.write_bytes(PAYLOAD)
    # the URL is never contacted when a local copy is given
    source = _source("http://127.0.0.1:9/never", _sha256(PAYLOAD))
    assert fetch(source, tmp_path / "out" / "k.jsonl", local_path=copy).read_bytes() == PAYLOAD
    with pytest.raises(ChecksumError, match=f"checksum mismatch for {re.escape(str(copy))}"):
        fetch(_source("http://127.0.0.1:9/never", _sha256(b"x")), tmp_path / "bad.jsonl", local_path=copy)
    assert not (tmp_path / "bad.jsonl").exists()
    with pytest.raises(InputError, match="local copy not found"):
        fetch(source, tmp_path / "k2.jsonl", local_path=tmp_path / "nope.jsonl")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.jsonl", "out"]


def test_pinned_table():
    assert set(SOURCES) >= {"alpaca", "vicuna", "koala", "wizardlm", "selfinstruct"}
    alpaca = SOURCES["alpaca"]
    assert alpaca.checksum == "gitblob:3779ddbc040543ab1834ef216c983d6fcc06cc9a"
    assert "/761dc5bfbdeeffa89b8bff5d038781a4055f796a/" in alpaca.url
    for source in SOURCES.values():
        # pinned to a full commit id, never a branch name
        assert re.match(r"https://raw\.githubusercontent\.com/[^/]+/[^/]+/[0-9a-f]{40}/", source.url), (
            source.url
        )
        assert source.format in {**datasets.TRAIN_SOURCES, **datasets.EVAL_SOURCES}
    with pytest.raises(ValueError, match="PinnedSource.checksum"):
        PinnedSource("x", "http://x", "md5:abc", "koala", "x", "x", 1)
    with pytest.raises(ValueError, match="40 lower-case hex"):
        PinnedSource("x", "http://x", "gitblob:XYZ", "koala", "x", "x", 1)


def test_pinned_file_reuses_a_verified_copy(server, tmp_path, monkeypatch):
    base, _, hits = server
    monkeypatch.setitem(SOURCES, "koala", _source(f"{base}/koala.jsonl", _sha256(PAYLOAD)))
    first = pinned_file("koala", tmp_path)
    assert first.read_bytes() == PAYLOAD and hits["/koala.jsonl"] == 1
    assert pinned_file("koala", tmp_path) == first and hits["/koala.jsonl"] == 1
    first.write_bytes(b"corrupted")  # a damaged copy is fetched again
    assert pinned_file("koala", tmp_path).read_bytes() == PAYLOAD and hits["/koala.jsonl"] == 2


def test_download_and_prepare_eval_commands(server, tmp_path, monkeypatch):
    base, _, _ = server
    monkeypatch.setitem(SOURCES, "koala", _source(f"{base}/koala.jsonl", _sha256(PAYLOAD)))
    out = tmp_path / "koala.jsonl"
    assert cli.main(["download", "--source", "koala", "--out", str(out)]) == 0
    assert out.read_bytes() == PAYLOAD
    config = read_json(str(out) + ".config.json")
    assert config["source"]["checksum"] == _sha256(PAYLOAD) and config["local_path"] is None

    # prepare-eval without --path downloads the pinned file into --download-dir first
    evals = tmp_path / "eval" / "koala.jsonl"
    argv = ["prepare-eval", "--source", "koala", "--name", "koala", "--download-dir", str(tmp_path / "dl")]
    assert cli.main([*argv, "--out", str(evals)]) == 0
    assert [r["category"] for r in datasets.read_eval_records(evals)] == ["koala", "koala"]
    assert read_json(str(evals) + ".config.json")["path"] == str(
        tmp_path / "dl" / "koala.koala_test_set.jsonl"
    )
    assert download.get_source("koala").url.startswith(base)
