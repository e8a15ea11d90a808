"""The tensor contract (span_deploy.rulebook.io): TABLES.md documents it, the rulebook fills it,
the exported graphs carry it."""
from __future__ import annotations

import re

import numpy as np
import pytest

from span_deploy.config import load_config
from span_deploy.features import read_features
from span_deploy.rulebook import build_rulebook, engine_inputs, engine_outputs
from tests.cases import ALL_CASES, REPO, SEG_CASES, ids

TABLES = REPO / "span_deploy" / "rulebook" / "TABLES.md"


def doc_rows(heading: str) -> dict[str, tuple[str, str]]:
    """name -> (dtype, shape) from the markdown table under ``heading``."""
    text = TABLES.read_text()
    part = text.split(heading, 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in part.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0].startswith("`"):
            rows[cells[0].strip("`")] = (cells[1], cells[2])
    assert rows, f"no table under {heading!r} in {TABLES}"
    return rows


PER_STAGE = {"win_u", "pos_u", "win_s", "pos_s", "gather", "coords", "globals"}
PER_BLOCK = {"up_parent", "up_slot", "up_gather"}
CASES = ALL_CASES + SEG_CASES


def generic(spec) -> str:
    """The documented name: per-stage tensors with their stage written {s}, decoder tables {i}."""
    if spec.kind in PER_BLOCK:
        return re.sub(r"(?<=^d)\d+(?=_)", "{i}", spec.name)
    if spec.kind not in PER_STAGE:
        return spec.name
    return re.sub(r"(?<=^s)\d+(?=_)|(?<=^stage)\d+(?=_)", "{s}", spec.name)


def row_symbol(spec) -> str:
    """The documented row symbol: n{s} / windows{s}_u for per-stage tensors, n{t} for decoder tables."""
    if spec.kind in PER_BLOCK:
        return "n{t}"
    if spec.kind in PER_STAGE:
        return re.sub(r"\d+", "{s}", spec.rows)
    return spec.rows


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_tables_md_lists_every_tensor(case):
    cfg = load_config(case / "config.yaml").with_outputs(2)
    for heading, specs in (("## Engine inputs", engine_inputs(cfg)), ("## Engine outputs", engine_outputs(cfg))):
        rows = doc_rows(heading)
        for spec in specs:
            key = generic(spec)
            assert key in rows, f"{spec.name} ({key}) is not documented under {heading} in TABLES.md"
            dtype, shape = rows[key]
            assert spec.dtype in dtype, (spec.name, dtype)
            dims = [d.strip() for d in shape.strip("()").split(",") if d.strip()]
            assert len(dims) == 1 + len(spec.dims), (spec.name, shape, spec.dims)
            if spec.dynamic:
                assert dims[0] == row_symbol(spec), (spec.name, shape, row_symbol(spec))
        documented = set(rows)
        produced = {generic(s) for s in specs}
        assert produced <= documented


def test_tables_md_has_no_extra_tensors():
    names = set()
    for case in CASES:
        cfg = load_config(case / "config.yaml").with_outputs(2)
        names |= {generic(s) for s in engine_inputs(cfg) + engine_outputs(cfg)}
    assert set(doc_rows("## Engine inputs")) | set(doc_rows("## Engine outputs")) == names


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_rulebook_fills_the_contract(case):
    """Every input exists, in contract order, with its dtype, static dims and a row count that
    agrees with every tensor sharing its row symbol."""
    cfg = load_config(case / "config.yaml")
    sf = read_features(case / "slide.h5")
    inputs = build_rulebook(sf.coords, cfg).engine_inputs(cfg, sf.feats)
    specs = engine_inputs(cfg)
    assert list(inputs) == [s.name for s in specs]
    rows: dict[str, int] = {}
    for s in specs:
        a = inputs[s.name]
        assert a.dtype == np.dtype(s.dtype), s.name
        assert a.shape[1:] == s.dims, (s.name, a.shape, s.dims)
        assert rows.setdefault(s.rows, a.shape[0]) == a.shape[0], f"{s.name}: rows disagree on {s.rows}"
