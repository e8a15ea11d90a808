"""The C++ host rulebook (cpp/src/rulebook.cpp, through the C API) against span_deploy.rulebook: every
table identical (names, dtypes, shapes, values), and the same refusals with the same messages.

Random slides (sparse cells, offsets, jitter inside a cell, clusters, single patches, float64
coordinates) under the fixtures' configs and geometric variations of them (hypothesis), and every
fixture slide under every fixture config."""
from __future__ import annotations

import dataclasses
import json

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from span_deploy.config import SpanConfig, load_config
from span_deploy.errors import RulebookError
from span_deploy.metadata import make_metadata
from span_deploy.rulebook import build_rulebook, input_names
from tests.cases import ALL_CASES, ERROR_CASES, SEG_CASES
from tests.cpp.cpp_runtime import CError, Runtime, runtime_lib_path

CASES = ALL_CASES + SEG_CASES + ERROR_CASES
CONFIGS = {p.name: load_config(p / "config.yaml") for p in CASES}


@pytest.fixture(scope="module")
def rt() -> Runtime:
    return Runtime(runtime_lib_path())


def slide_coords(case) -> np.ndarray:
    with h5py.File(case / "slide.h5", "r") as f:
        for key in ("cords", "pos", "coords"):
            if key in f:
                c = f[key][()]
                return c[0] if c.ndim == 3 else c
    raise AssertionError(f"{case}: no coordinates")


def python_tables(coords: np.ndarray, cfg: SpanConfig) -> dict[str, np.ndarray]:
    rb = build_rulebook(coords, cfg)
    out = dict(rb.engine_inputs(cfg))
    p = rb.padding
    out.update({
        "sort_index": rb.sort_index.astype(np.int64), "norm_coords": rb.norm_coords.astype(np.int32),
        "patch_rows": rb.patch_rows,
        "padding": np.array([p.left[0], p.left[1], p.right[0], p.right[1], p.lead, p.trail], np.int64),
        "stage_sizes": np.array(rb.stage_sizes, np.int64)})
    for s, stage in enumerate(rb.stages):
        out[f"stage{s}_coords"] = stage.coords.astype(np.int64).reshape(-1, 2)
        out[f"stage{s}_grid"] = np.array(stage.grid, np.int64)
        out[f"stage{s}_shift"] = np.array([stage.windows.shift_active, stage.windows.small_grid], np.int32)
    return out


def compare(rt: Runtime, coords: np.ndarray, cfg: SpanConfig, config=None) -> str:
    """Assert the C++ rulebook equals the numpy one (or both refuse alike); 'ok' or 'refused'."""
    try:
        want = python_tables(coords, cfg)
        py_err = None
    except RulebookError as e:
        py_err = str(e)
    try:
        got, n_inputs = rt.rulebook(cfg.to_dict() if config is None else config, coords)
        c_err = None
    except CError as e:
        c_err = e
    if py_err is not None:
        assert c_err is not None, f"Python refuses ({py_err}) but C++ built a rulebook"
        assert c_err.status == "SPAN_ERR_RULEBOOK" and c_err.message == py_err, (c_err, py_err)
        return "refused"
    assert c_err is None, f"C++ refuses ({c_err}) but Python builds the rulebook"
    names = list(got)
    assert names[:n_inputs] == input_names(cfg)[1:], "engine inputs (graph order, feats aside)"
    assert set(names) == set(want), set(names) ^ set(want)
    for name, w in want.items():
        g = got[name]
        assert g.dtype == w.dtype and g.shape == w.shape, (name, g.dtype, g.shape, w.dtype, w.shape)
        assert np.array_equal(g, w), f"table {name} differs"
    return "ok"


# ---- every fixture slide under every fixture config -----------------------------------------------

def test_fixture_slides_every_config(rt):
    outcomes = {"ok": 0, "refused": 0}
    for case in CASES:
        coords = slide_coords(case)
        for name, cfg in CONFIGS.items():
            outcomes[compare(rt, coords, cfg)] += 1
    assert outcomes["ok"] >= len(CASES) * len(CONFIGS) // 2, outcomes
    # the duplicate-cell fixture is refused under its own config, by both
    assert compare(rt, slide_coords(ERROR_CASES[0]), CONFIGS[ERROR_CASES[0].name]) == "refused"


def test_whole_metadata_object_and_float_coords(rt):
    """The config can come as the export's whole metadata object; float64 coordinates (one public
    fixture stores them so) go through span_rulebook_build_f64."""
    cfg = CONFIGS["cls_swin_rope_mean_shareqkv"]
    coords = slide_coords(next(p for p in CASES if p.name == "cls_swin_rope_mean_shareqkv"))
    assert coords.dtype.kind == "f"
    assert compare(rt, coords, cfg, config=make_metadata(cfg, "plugin", "fp32")) == "ok"
    assert compare(rt, coords + 0.75, cfg) == "ok"          # fractions inside the cell
    assert compare(rt, coords.astype(np.int64), cfg, config=json.dumps(cfg.to_dict())) == "ok"


# ---- random slides (hypothesis) ----------------------------------------------------------------------

def variant(draw, cfg: SpanConfig) -> SpanConfig:
    """The config, or one with other geometry (the ranges config.from_official accepts, kept small)."""
    if draw(st.booleans()):
        return cfg
    changes = dict(window_size=draw(st.integers(1, 5)), kernel_size=draw(st.integers(1, 4)),
                   stride=draw(st.integers(1, 3)), dilation=draw(st.integers(1, 2)),
                   conv_type=draw(st.sampled_from(["dwpatchconv", "patchconv", "patchmerge"])),
                   trans_type=draw(st.sampled_from(["long", "long_noshift", "swin"])),
                   pos_emb=draw(st.sampled_from(["rpb", "alibi", "rope", "none"])))
    n_stages = draw(st.integers(1, 4))
    changes["encoder_string"] = "1" * n_stages
    if cfg.task == "segmentation":
        changes["encoder_string"] = "1" * max(n_stages, 2)
        changes["decoder_string"] = "1" * (len(changes["encoder_string"]) - 1)
        changes["dconv_type"] = draw(st.sampled_from(["pixelshuffle", "patchinvs", "dwpatchinvs"]))
        changes["dtrans_type"] = draw(st.sampled_from(["long", "long_noshift", "swin"]))
    return dataclasses.replace(cfg, **changes)


@st.composite
def slides(draw):
    kind = draw(st.sampled_from(["sparse", "jitter", "clusters", "single", "float"]))
    if kind == "single":
        cells = np.array([[draw(st.integers(0, 5000)), draw(st.integers(0, 5000))]])
    elif kind == "clusters":
        parts = []
        for _ in range(draw(st.integers(1, 3))):
            centre = np.array([draw(st.integers(0, 3000)), draw(st.integers(0, 3000))])
            pts = draw(st.lists(st.tuples(st.integers(0, 12), st.integers(0, 12)), min_size=1, max_size=40, unique=True))
            parts.append(centre + np.array(pts))
        cells = np.unique(np.concatenate(parts), axis=0)
    else:
        side = draw(st.integers(1, 60))
        pts = draw(st.lists(st.tuples(st.integers(0, side), st.integers(0, side)), min_size=1, max_size=80, unique=True))
        cells = np.array(pts)
    cells = cells[np.random.default_rng(draw(st.integers(0, 2**32 - 1))).permutation(len(cells))]  # unsorted rows
    offset = np.array([draw(st.integers(0, 40000)), draw(st.integers(0, 40000))]) * draw(st.sampled_from([1, 224]))
    raw = cells.astype(np.int64) * 224 + offset
    if kind == "jitter":        # inside-cell offsets: some slides collide after normalisation (refused by both)
        jit = st.tuples(st.integers(0, 223), st.integers(0, 223))
        raw = raw + np.asarray(draw(st.lists(jit, min_size=len(raw), max_size=len(raw)))).reshape(-1, 2)
    if kind == "float":
        raw = raw.astype(np.float64) + draw(st.sampled_from([0.0, 0.25, 111.5]))
    if draw(st.integers(0, 9)) == 0 and len(raw) > 1:   # a duplicated row: refused
        raw = np.concatenate([raw, raw[:1]])
    return raw


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data(), coords=slides())
def test_random_slides_match_python(rt, data, coords):
    base = CONFIGS[data.draw(st.sampled_from(sorted(CONFIGS)))]
    cfg = data.draw(st.composite(lambda draw: variant(draw, base))())
    compare(rt, coords, cfg)


def test_edge_slides(rt):
    """Hand-picked: one patch, a row, a column, the int16 limit of the padded grid, huge offsets."""
    cfg = CONFIGS["cls_default_r50"]
    seg = CONFIGS["seg_default"]
    for c in ([[0, 0]], [[224 * 7, 224 * 3]], [[i * 224, 0] for i in range(40)], [[0, i * 224] for i in range(40)],
              [[0, 0], [224 * 32760, 0]], [[0, 0], [224 * 32767, 0]], [[0, 0], [224 * 40000, 224]],
              [[10**12, 10**12], [10**12 + 224, 10**12]], [[-224, -448], [0, 0], [224, 448]]):
        for k in (cfg, seg, dataclasses.replace(cfg, conv_type="patchmerge"),
                  dataclasses.replace(cfg, kernel_size=3, stride=1, dilation=2, encoder_string="11")):
            compare(rt, np.array(c, np.int64), k)
    # duplicates with float coordinates: the message quotes them as Python's repr does
    for v in (3360.0, 0.0001, 1e-05, 123.456, 1e15, 1.2345678901234568e16, 2.5e-300, 7.0e20, -448.5):
        assert compare(rt, np.array([[v, 0.0], [v, 0.0], [v + 2e6, 224.0]]), cfg) == "refused"
    with pytest.raises(CError) as e:
        rt.rulebook(cfg.to_dict(), np.zeros((0, 2), np.int64))
    assert e.value.status == "SPAN_ERR_RULEBOOK" and "no patches" in e.value.message
    with pytest.raises(CError) as e:
        rt.rulebook(cfg.to_dict(), np.array([[0.0, np.nan]]))
    assert e.value.status == "SPAN_ERR_RULEBOOK" and "NaN or Inf" in e.value.message
