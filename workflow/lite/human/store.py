"""The ratings database: one SQLite file per (model, eval set), ``results/<model>/human/<evalset>.sqlite``.

It holds the items (each prompt with both systems' answers, copied from the generation records,
so the file alone says what was rated), the raters, their sign-in sessions, each rater's
assignments (the item order and which system is shown first, both drawn per rater and kept) and
the ratings. Every rating is committed before the page answers, so closing the browser loses
nothing that was submitted. One rating per assignment: a second submission for the same item
(a revision, a double click) replaces the first, so each item is counted once per rater.

The rollback journal (not WAL) is kept on purpose: every commit then rewrites the main file, so
its modification time tells Snakemake that table5 is out of date.

Tables: ``meta``, ``items``, ``raters``, ``sessions`` (SHA-256 of the cookie token only),
``assignments`` (rater, position, item, ``first``: ``a`` or ``b``) and ``ratings`` (the two
scores as the rater gave them, for Response 1 and Response 2 in the order shown, or a skip).
:func:`read_ratings` maps them back to systems.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import hmac
import os
import random
import secrets
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from lite.human.settings import check_rater
from lite.io import InputError
from lite.judge.api import now
from lite.judge.records import Pair

SCHEMA_VERSION = 1
SCORES = range(1, 11)  # the paper's scale, integers 1..10

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    item INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    category TEXT,
    instruction TEXT NOT NULL,
    input TEXT NOT NULL,
    answer_a TEXT NOT NULL,
    answer_b TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS raters (
    rater TEXT PRIMARY KEY COLLATE NOCASE,
    seed INTEGER NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    token_sha256 TEXT PRIMARY KEY,
    rater TEXT NOT NULL REFERENCES raters (rater),
    csrf TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS assignments (
    assignment INTEGER PRIMARY KEY,
    rater TEXT NOT NULL REFERENCES raters (rater),
    position INTEGER NOT NULL,
    item INTEGER NOT NULL REFERENCES items (item),
    first TEXT NOT NULL CHECK (first IN ('a', 'b')),
    UNIQUE (rater, position),
    UNIQUE (rater, item)
);
CREATE TABLE IF NOT EXISTS ratings (
    assignment INTEGER PRIMARY KEY REFERENCES assignments (assignment),
    score_1 INTEGER CHECK (score_1 BETWEEN 1 AND 10),
    score_2 INTEGER CHECK (score_2 BETWEEN 1 AND 10),
    skipped INTEGER NOT NULL CHECK (skipped IN (0, 1)),
    rated_at TEXT NOT NULL,
    CHECK ((skipped = 1 AND score_1 IS NULL AND score_2 IS NULL)
        OR (skipped = 0 AND score_1 IS NOT NULL AND score_2 IS NOT NULL))
);
"""


class Refused(Exception):
    """A request the store will not carry out; ``status`` is the HTTP status the page answers."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclasses.dataclass(frozen=True)
class Session:
    rater: str
    csrf: str


@dataclasses.dataclass(frozen=True)
class Assignment:
    """One item as one rater sees it: responses in the order drawn for them, never the systems."""

    number: int  # the assignment's id: what the page posts back
    position: int  # 1-based place in this rater's order
    instruction: str
    input: str
    response_1: str
    response_2: str
    score_1: int | None  # this rater's earlier rating, if any (for revisiting an item)
    score_2: int | None
    skipped: bool | None  # None: not rated yet


@dataclasses.dataclass(frozen=True)
class Progress:
    total: int
    rated: int
    skipped: int

    @property
    def done(self) -> int:
        return self.rated + self.skipped


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def parse_score(value) -> int:
    """A score as typed: an integer 1..10, else :class:`Refused` (400)."""
    text = str(value if value is not None else "").strip()
    if not text.isdigit() or int(text) not in SCORES:
        raise Refused(400, f"a score must be a whole number from 1 to 10, got {text or 'nothing'!r}")
    return int(text)


class Store:
    """The ratings database. Each call opens its own connection, so server threads share nothing."""

    def __init__(self, path: str | os.PathLike, allowed_raters: tuple[str, ...] = ()):
        self.path = Path(path)
        # Named raters only, when given (case-insensitive); anyone may sign in otherwise.
        self.allowed = {name.casefold(): name for name in allowed_raters}

    @contextlib.contextmanager
    def connect(self, write: bool = False) -> Iterator[sqlite3.Connection]:
        """A connection in one transaction (``BEGIN IMMEDIATE`` for writes), committed on success."""
        connection = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            connection.row_factory = sqlite3.Row
            connection.execute("PRAGMA foreign_keys = ON")
            connection.execute("PRAGMA synchronous = FULL")  # a commit is on disk before the reply
            connection.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield connection
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")
        finally:
            connection.close()

    # ------------------------------------------------------------------ creation
    @classmethod
    def create_or_open(
        cls, path: str | os.PathLike, pair: Pair, *, n: int | None = None, allowed_raters=()
    ) -> Store:
        """Open ``path``, creating it from ``pair`` (its first ``n`` instances) when it is new.

        An existing file must hold the same model, eval set and systems, and its items the same
        prompts and answers as ``pair`` now has: ratings of answers that have since been
        regenerated would be compared with judgments of other answers.
        """
        store = cls(path, tuple(allowed_raters))
        store.path.parent.mkdir(parents=True, exist_ok=True)
        instances = pair.instances[:n] if n is not None else pair.instances
        expected = {
            "model": pair.model,
            "evalset": pair.evalset,
            "system_a": pair.system_a,
            "system_b": pair.system_b,
        }
        with store.connect(write=True) as db:
            # One statement at a time: executescript would commit the open transaction first.
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            meta = {row["key"]: row["value"] for row in db.execute("SELECT key, value FROM meta")}
            if not meta:
                db.executemany(
                    "INSERT INTO meta (key, value) VALUES (?, ?)",
                    [*expected.items(), ("schema_version", str(SCHEMA_VERSION)), ("created_at", now())],
                )
                db.executemany(
                    "INSERT INTO items (id, category, instruction, input, answer_a, answer_b) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    [(i.id, i.category, i.instruction, i.input, i.answer_a, i.answer_b) for i in instances],
                )
                return store
            for key, value in expected.items():
                if meta.get(key) != value:
                    raise InputError(
                        f"{store.path}: holds ratings of {meta.get('system_a')} vs {meta.get('system_b')} "
                        f"({meta.get('model')}, {meta.get('evalset')}), not {key} {value!r}; "
                        "give another --db for another pair"
                    )
            current = {i.id: i for i in pair.instances}
            for row in db.execute("SELECT id, instruction, input, answer_a, answer_b FROM items"):
                inst = current.get(row["id"])
                if inst is None or (inst.instruction, inst.input, inst.answer_a, inst.answer_b) != (
                    row["instruction"],
                    row["input"],
                    row["answer_a"],
                    row["answer_b"],
                ):
                    raise InputError(
                        f"{store.path}: item {row['id']!r} was rated on a prompt or answers that the "
                        f"generation records no longer hold ({pair.path_a}); the ratings would not match "
                        "the judgments. Keep the old file aside and start a new one."
                    )
        return store

    # ------------------------------------------------------------------ raters and sessions
    def sign_in(self, name: str) -> tuple[str, Session]:
        """(cookie token, session) for ``name``; a new rater gets their own order of the items."""
        try:
            name = check_rater(name)
        except InputError as err:
            raise Refused(400, str(err)) from None
        if self.allowed and name.casefold() not in self.allowed:
            raise Refused(403, f"{name!r} is not on this study's list of raters")
        # Hex, so a token can never spell a word (a system name, say) into the page's HTML.
        token, csrf = secrets.token_hex(32), secrets.token_hex(32)
        with self.connect(write=True) as db:
            row = db.execute("SELECT rater FROM raters WHERE rater = ?", (name,)).fetchone()
            if row is None:
                name = self.allowed.get(name.casefold(), name)  # as the list of raters spells it
                self._add_rater(db, name)
            else:
                name = row["rater"]  # as first written, whatever the case typed now
            db.execute(
                "INSERT INTO sessions (token_sha256, rater, csrf, created_at) VALUES (?, ?, ?, ?)",
                (_digest(token), name, csrf, now()),
            )
        return token, Session(name, csrf)

    @staticmethod
    def _add_rater(db: sqlite3.Connection, name: str) -> None:
        # The seed is kept so the drawn order can be checked later; it is drawn, not derived from
        # the name, so no one can work out a rater's order (or the sides) in advance.
        seed = secrets.randbits(62)
        rng = random.Random(seed)
        items = [row["item"] for row in db.execute("SELECT item FROM items ORDER BY item")]
        rng.shuffle(items)
        # Each system shown first on half the items (an odd one out drawn), against position bias.
        sides = ["a", "b"] * (len(items) // 2) + ([rng.choice("ab")] if len(items) % 2 else [])
        rng.shuffle(sides)
        db.execute("INSERT INTO raters (rater, seed, created_at) VALUES (?, ?, ?)", (name, seed, now()))
        db.executemany(
            "INSERT INTO assignments (rater, position, item, first) VALUES (?, ?, ?, ?)",
            [
                (name, position, item, side)
                for position, (item, side) in enumerate(zip(items, sides, strict=True), 1)
            ],
        )

    def session(self, token: str | None) -> Session | None:
        if not token:
            return None
        with self.connect() as db:
            row = db.execute(
                "SELECT rater, csrf FROM sessions WHERE token_sha256 = ?", (_digest(token),)
            ).fetchone()
        return Session(row["rater"], row["csrf"]) if row else None

    def sign_out(self, token: str) -> None:
        with self.connect(write=True) as db:
            db.execute("DELETE FROM sessions WHERE token_sha256 = ?", (_digest(token),))

    @staticmethod
    def check_csrf(session: Session, csrf: str | None) -> None:
        if not csrf or not hmac.compare_digest(session.csrf, csrf):
            raise Refused(403, "this form is stale or was not sent from the rating page; reload it")

    # ------------------------------------------------------------------ items
    def progress(self, rater: str) -> Progress:
        with self.connect() as db:
            row = db.execute(
                "SELECT COUNT(*) AS total, COALESCE(SUM(r.skipped = 0), 0) AS rated, "
                "COALESCE(SUM(r.skipped = 1), 0) AS skipped "
                "FROM assignments a LEFT JOIN ratings r USING (assignment) WHERE a.rater = ?",
                (rater,),
            ).fetchone()
        return Progress(row["total"], row["rated"], row["skipped"])

    def next_assignment(self, rater: str) -> Assignment | None:
        """The first item in this rater's order that they have neither rated nor skipped."""
        with self.connect() as db:
            row = db.execute(
                "SELECT a.assignment FROM assignments a LEFT JOIN ratings r USING (assignment) "
                "WHERE a.rater = ? AND r.assignment IS NULL ORDER BY a.position LIMIT 1",
                (rater,),
            ).fetchone()
        return self.assignment(rater, row["assignment"]) if row else None

    def assignment(self, rater: str, number) -> Assignment:
        """Assignment ``number`` if it is ``rater``'s; anyone else's is refused (403)."""
        number = self._number(number)
        with self.connect() as db:
            row = db.execute(
                "SELECT a.assignment, a.rater, a.position, a.first, i.instruction, i.input, i.answer_a, "
                "i.answer_b, r.score_1, r.score_2, r.skipped "
                "FROM assignments a JOIN items i USING (item) LEFT JOIN ratings r USING (assignment) "
                "WHERE a.assignment = ?",
                (number,),
            ).fetchone()
        if row is None or row["rater"] != rater:
            # The same answer for another rater's item and for no item: nothing to probe.
            raise Refused(403, "this item is not assigned to you")
        shown = (row["answer_a"], row["answer_b"])
        if row["first"] == "b":
            shown = shown[::-1]
        return Assignment(
            number=row["assignment"],
            position=row["position"],
            instruction=row["instruction"],
            input=row["input"],
            response_1=shown[0],
            response_2=shown[1],
            score_1=row["score_1"],
            score_2=row["score_2"],
            skipped=None if row["skipped"] is None else bool(row["skipped"]),
        )

    def neighbour(self, rater: str, position: int, step: int) -> int | None:
        """The assignment number ``step`` places from ``position`` in the rater's order, if any."""
        with self.connect() as db:
            row = db.execute(
                "SELECT assignment FROM assignments WHERE rater = ? AND position = ?",
                (rater, position + step),
            ).fetchone()
        return row["assignment"] if row else None

    @staticmethod
    def _number(value) -> int:
        text = str(value if value is not None else "").strip()
        if not text.isdigit():
            raise Refused(400, f"no such item {text!r}")
        return int(text)

    # ------------------------------------------------------------------ ratings
    def rate(self, rater: str, number, score_1, score_2) -> None:
        """Store the two scores (Response 1, Response 2 as shown); checked before anything is written."""
        scores = parse_score(score_1), parse_score(score_2)
        self._write(rater, number, scores, skipped=False)

    def skip(self, rater: str, number) -> None:
        self._write(rater, number, (None, None), skipped=True)

    def _write(self, rater: str, number, scores: tuple, skipped: bool) -> None:
        number = self._number(number)
        with self.connect(write=True) as db:
            owner = db.execute("SELECT rater FROM assignments WHERE assignment = ?", (number,)).fetchone()
            if owner is None or owner["rater"] != rater:
                raise Refused(403, "this item is not assigned to you")
            db.execute(
                "INSERT INTO ratings (assignment, score_1, score_2, skipped, rated_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (assignment) DO UPDATE SET score_1 = excluded.score_1, "
                "score_2 = excluded.score_2, skipped = excluded.skipped, rated_at = excluded.rated_at",
                (number, *scores, int(skipped), now()),
            )


# ---------------------------------------------------------------------- reading for table5
def read_meta(path: str | os.PathLike) -> dict[str, str]:
    with _open_existing(path) as db:
        return {row["key"]: row["value"] for row in db.execute("SELECT key, value FROM meta")}


def read_ratings(path: str | os.PathLike) -> list[dict]:
    """Every rating with scores mapped back to systems: rater, id, category, position, first,
    skipped, score_a, score_b, rated_at (in rater, position order)."""
    with _open_existing(path) as db:
        rows = db.execute(
            "SELECT a.rater, i.id, i.category, a.position, a.first, r.skipped, r.score_1, r.score_2, "
            "r.rated_at FROM ratings r JOIN assignments a USING (assignment) JOIN items i USING (item) "
            "ORDER BY a.rater, a.position"
        ).fetchall()
    out = []
    for row in rows:
        shown = (row["score_1"], row["score_2"])
        score_a, score_b = shown if row["first"] == "a" else shown[::-1]
        out.append(
            {
                "rater": row["rater"],
                "id": row["id"],
                "category": row["category"],
                "position": row["position"],
                "first": row["first"],
                "skipped": bool(row["skipped"]),
                "score_a": score_a,
                "score_b": score_b,
                "rated_at": row["rated_at"],
            }
        )
    return out


@contextlib.contextmanager
def _open_existing(path: str | os.PathLike) -> Iterator[sqlite3.Connection]:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no ratings database (start collecting ratings with `lite annotate`)")
    connection = sqlite3.connect(path, timeout=30)
    connection.row_factory = sqlite3.Row
    try:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not {"meta", "items", "assignments", "ratings"} <= tables:
            raise InputError(f"{path}: not a ratings database written by `lite annotate`")
        yield connection
    except sqlite3.DatabaseError as err:
        raise InputError(f"{path}: not a readable SQLite database ({err})") from None
    finally:
        connection.close()
