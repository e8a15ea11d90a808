"""Bad input (features, configs, duplicate cells): a clear message naming the file and the fix, a
non-zero exit, no output written."""
from __future__ import annotations

import json
import subprocess
import sys

import h5py
import numpy as np
import pytest
import yaml

from span_deploy.config import load_config
from span_deploy.errors import ConfigError, FeatureFileError, RulebookError
from span_deploy.features import read_features
from span_deploy.rulebook import build_rulebook
from tests.cases import ERROR_CASES, PUBLIC

CASE = PUBLIC / "cls_tiny_alltoall"


def cli(*args):
    return subprocess.run([sys.executable, "-m", "span_deploy.cli", *map(str, args)], capture_output=True, text=True)


def write_h5(path, feats, cords, names=("feats", "cords")):
    with h5py.File(path, "w") as f:
        f.create_dataset(names[0], data=feats)
        f.create_dataset(names[1], data=cords)
    return path


@pytest.mark.parametrize("case", ERROR_CASES, ids=[c.name for c in ERROR_CASES])
def test_duplicate_cells_are_refused_by_the_cli(case, tmp_path):
    out = tmp_path / "out.json"
    r = cli("predict", case / "slide.h5", "--checkpoint", case / "checkpoint.pt", "--config", case / "config.yaml",
            "--output", out)
    assert r.returncode != 0
    assert "grid cell" in r.stderr and "1 patch(es)" in r.stderr
    assert str(case / "slide.h5") in r.stderr                       # which file
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_duplicate_message_names_the_coordinates():
    cords = np.array([[0, 0], [224, 0], [224 + 100, 0]])   # the last two share cell (1, 0)
    cfg = load_config(CASE / "config.yaml")
    with pytest.raises(RulebookError, match=r"raw \[224, 0\] and \[324, 0\].*cell \[1, 0\]"):
        build_rulebook(cords, cfg)


def test_feature_file_errors(tmp_path):
    good = np.zeros((3, 512), np.float32)
    cords = np.array([[0, 0], [224, 0], [448, 0]])
    with pytest.raises(FeatureFileError, match="not found"):
        read_features(tmp_path / "missing.h5")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(FeatureFileError, match="not a readable HDF5"):
        read_features(tmp_path / "junk.h5")
    bad = good.copy()
    bad[1, 3] = np.nan
    with pytest.raises(FeatureFileError, match="NaN/Inf features.*row 1"):
        read_features(write_h5(tmp_path / "nan.h5", bad, cords))
    with pytest.raises(FeatureFileError, match="expects 1024-d"):
        read_features(write_h5(tmp_path / "dim.h5", good, cords), feat_dim=1024)
    with pytest.raises(FeatureFileError, match="empty"):
        read_features(write_h5(tmp_path / "empty.h5", good[:0], cords[:0]))
    with pytest.raises(FeatureFileError, match="features\\+coords"):
        read_features(write_h5(tmp_path / "names.h5", good, cords, ("a", "b")))
    sf = read_features(write_h5(tmp_path / "trident.h5", good[None], cords[None], ("features", "coords")))
    assert sf.feats.shape == (3, 512) and sf.coords.shape == (3, 2)


def test_cli_rejects_wrong_feature_dim_without_output(tmp_path):
    slide = write_h5(tmp_path / "s.h5", np.zeros((4, 1024), np.float32), np.arange(8).reshape(4, 2) * 224)
    out = tmp_path / "o.json"
    r = cli("predict", slide, "--checkpoint", CASE / "checkpoint.pt", "--config", CASE / "config.yaml", "-o", out)
    assert r.returncode != 0 and "expects 512-d" in r.stderr and not out.exists()


@pytest.mark.parametrize("trans", ["tradswin", "swin_global"])
def test_unbuildable_trans_types_are_rejected(tmp_path, trans):
    cfg = yaml.safe_load((CASE / "config.yaml").read_text())
    cfg["model"]["trans_type"] = trans
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError, match="cannot be built by the official config builder"):
        load_config(p)


def test_separate_model_and_task_yaml(tmp_path):
    full = yaml.safe_load((CASE / "config.yaml").read_text())
    (tmp_path / "span.yaml").write_text(yaml.safe_dump(full["model"]))
    task = {k: v for k, v in full.items() if k != "model"}
    (tmp_path / "task.yaml").write_text(yaml.safe_dump(task))
    assert load_config(model_yaml=tmp_path / "span.yaml", task_yaml=tmp_path / "task.yaml") == load_config(CASE / "config.yaml")


def _demo():
    from tests.cases import REPO
    return REPO / "samples" / "demo"


@pytest.mark.parametrize("command", ["predict", "run", "export", "bench"])
def test_output_under_a_regular_file_is_one_clear_line(tmp_path, command):
    """-o / --json below a regular file: exit 2 before any work, no traceback, nothing written."""
    from tests.cases import REPO
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    demo = _demo()
    args = {
        "predict": ["predict", CASE / "slide.h5", "--checkpoint", CASE / "checkpoint.pt", "--config",
                    CASE / "config.yaml", "-o", blocker / "x.json"],
        "run": ["run", REPO / "samples" / "data" / "CMU-1-Small-Region.svs", "--model", demo / "span.onnx",
                "--output", blocker / "x", "--no-progress"],
        "export": ["export", "--checkpoint", demo / "checkpoint.pt", "--config", demo / "config.yaml",
                   "-o", blocker / "x.onnx"],
        "bench": ["bench", "--model", demo / "span.onnx", "--tokens", "100", "--json", blocker / "b.json"],
    }[command]
    r = cli(*args)
    assert r.returncode == 2, r.stderr
    assert "is a file, not a folder" in r.stderr and "Traceback" not in r.stderr
    assert blocker.read_text() == "x" and sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


@pytest.mark.parametrize("option,value", [("--target-mpp", "-1"), ("--target-mpp", "0"), ("--mpp", "1e9"),
                                          ("--target-mpp", "nan")])
def test_resolution_options_are_range_checked(tmp_path, option, value):
    from tests.cases import REPO
    r = subprocess.run([sys.executable, "-m", "span_deploy.cli", "run",
                        str(REPO / "samples" / "data" / "CMU-1-Small-Region.svs"), "--model",
                        str(_demo() / "span.onnx"), "--output", str(tmp_path / "o"), option, value],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "Invalid value for" in r.stderr and not (tmp_path / "o").exists()


def test_non_slides_in_a_glob_are_left_out_and_an_empty_folder_is_an_error(tmp_path):
    from tests.cases import REPO
    svs = REPO / "samples" / "data" / "CMU-1-Small-Region.svs"
    notes = tmp_path / "README.md"
    notes.write_text("not a slide")
    r = cli("run", svs, notes, "--model", _demo() / "span.onnx", "--output", tmp_path / "o", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "1 file(s) are not slides by their extension and are left out: " in r.stderr and "1 ok" in r.stdout
    empty = tmp_path / "empty"
    empty.mkdir()
    r = cli("run", empty, "--model", _demo() / "span.onnx", "--output", tmp_path / "o2")
    assert r.returncode == 2 and "no slide files in" in r.stderr and not (tmp_path / "o2").exists()


def test_bench_refuses_an_impossible_size_up_front():
    import time
    t0 = time.perf_counter()
    r = cli("bench", "--model", _demo() / "span.onnx", "--tokens", "10000000000")
    assert r.returncode == 2 and "GiB available; use fewer --tokens" in r.stderr
    assert time.perf_counter() - t0 < 30 and "Traceback" not in r.stderr


def test_bench_json_is_readable_by_others_and_export_is_quiet(tmp_path):
    import stat
    r = cli("bench", "--model", _demo() / "span.onnx", "--tokens", "50", "--iterations", "1", "--warmup", "0",
            "--no-gemm", "--json", tmp_path / "b.json")
    assert r.returncode == 0, r.stderr
    assert stat.S_IMODE((tmp_path / "b.json").stat().st_mode) == 0o644
    r = cli("export", "--checkpoint", _demo() / "checkpoint.pt", "--config", _demo() / "config.yaml",
            "-o", tmp_path / "m.onnx")
    assert r.returncode == 0 and "Warning" not in r.stderr, r.stderr


def test_run_and_embed_take_a_checkpoint_with_its_config(tmp_path):
    """--model checkpoint.pt --config config.yaml: exported once on the fly, same result as the ONNX."""
    from tests.cases import REPO
    svs, demo = REPO / "samples" / "data" / "CMU-1-Small-Region.svs", _demo()
    r = cli("run", svs, "--model", demo / "checkpoint.pt", "--output", tmp_path / "o")
    assert r.returncode == 2 and "is a checkpoint: give its official config with --config" in r.stderr
    r = cli("run", svs, "--model", demo / "checkpoint.pt", "--config", demo / "config.yaml",
            "--encoder", demo / "encoder.onnx", "--output", tmp_path / "o", "--no-progress")
    assert r.returncode == 0, r.stderr
    r2 = cli("run", svs, "--model", demo / "span.onnx", "--output", tmp_path / "p", "--no-progress")
    assert r2.returncode == 0, r2.stderr
    a = json.loads((tmp_path / "o" / "CMU-1-Small-Region" / "result.json").read_text())["logits"]
    b = json.loads((tmp_path / "p" / "CMU-1-Small-Region" / "result.json").read_text())["logits"]
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-4)
    r = cli("embed", svs, "--model", demo / "checkpoint.pt", "--config", demo / "config.yaml",
            "--encoder", demo / "encoder.onnx", "--output", tmp_path / "e")
    assert r.returncode == 0, r.stderr
    r = cli("embed", svs, "--model", demo / "span.onnx", "--config", demo / "config.yaml", "--output", tmp_path / "f")
    assert r.returncode == 2 and "--config is only for a checkpoint" in r.stderr
