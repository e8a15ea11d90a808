"""Crash safety of `run`: kill -9 at several points, then --resume, leaves every slide complete and
valid (or redone); two runs into one output folder never work on one slide at once."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pytest

from tests.cases import REPO

DEMO = REPO / "samples" / "demo"
OUTPUTS = ("result.json", "heatmap.png", "tiles.geojson", "embedding.npy")


@pytest.fixture
def slide_folder(make_slide, tmp_path):
    d = tmp_path / "slides"
    d.mkdir()
    for k in range(6):
        p = make_slide(f"s{k}.tif", 14, 12, tissue_cells=(1, 1, 9 + k % 3, 8))
        p.rename(d / p.name)
    return d


def start_run(slides: Path, out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "span_deploy.cli", "run", str(slides), "--model",
                             str(DEMO / "span.onnx"), "--output", str(out), "--no-progress", "--workers", "1",
                             "--batch-size", "8", *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def check_complete(out: Path, names: list[str]) -> None:
    for name in names:
        d = out / name
        for f in OUTPUTS + (f"{name}.h5",):
            assert (d / f).is_file(), f"{d / f} missing"
        rec = json.loads((d / "result.json").read_text())
        assert rec["status"] == "ok" and rec["n_tiles"] > 0
        with h5py.File(d / f"{name}.h5") as h:
            assert h["feats"].shape[0] == rec["n_tiles"]
        assert not list(d.glob(".*.tmp*")), f"temp files left in {d}"
        assert not (d / ".lock").exists(), f"lock left in {d}"


@pytest.mark.parametrize("delays", [(1.0, 2.5), (1.8, 0.7, 3.0)])
def test_kill_9_then_resume(slide_folder, tmp_path, delays):
    out = tmp_path / "out"
    names = sorted(p.stem for p in slide_folder.iterdir())
    for delay in delays:
        p = start_run(slide_folder, out, "--resume")
        time.sleep(delay)
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout=60)
    p = start_run(slide_folder, out, "--resume")
    stdout, stderr = p.communicate(timeout=300)
    assert p.returncode == 0, stderr
    check_complete(out, names)
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert sorted(Path(r["slide"]).stem for r in rows) == names
    assert all(r["status"] in ("ok", "skipped") for r in rows)


def test_two_runs_into_one_folder(slide_folder, tmp_path):
    out = tmp_path / "out"
    names = sorted(p.stem for p in slide_folder.iterdir())
    a, b = start_run(slide_folder, out, "--resume"), start_run(slide_folder, out, "--resume")
    (oa, ea), (ob, eb) = a.communicate(timeout=300), b.communicate(timeout=300)
    assert a.returncode == 0 and b.returncode == 0, ea + eb
    check_complete(out, names)
    ok = [int(o.split(" ok,")[0].split()[-1]) for o in (oa, ob)]
    assert sum(ok) == len(names), (oa, ob, ea, eb)          # every slide processed exactly once


def test_a_stale_lock_is_taken_over(slide_folder, tmp_path):
    """A lock left by a killed run (its pid is gone) does not block the slide forever."""
    import socket
    out = tmp_path / "out"
    d = out / "s0"
    d.mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (d / ".lock").write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid, "since": 0}))
    (d / ".result.json.abc.tmp.json").write_text("{half")
    p = start_run(slide_folder, out)
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    check_complete(out, sorted(q.stem for q in slide_folder.iterdir()))
