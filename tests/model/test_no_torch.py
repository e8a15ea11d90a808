"""The runtime imports without torch; nothing imports dgl."""
from __future__ import annotations

import re
import subprocess
import sys

from tests.cases import PUBLIC, REPO

BLOCK = "import sys; sys.modules['torch'] = None; sys.modules['dgl'] = None\n"


def test_runtime_and_rulebook_without_torch():
    case = PUBLIC / "cls_default_r50"
    code = BLOCK + f"""
import span_deploy, span_deploy.rulebook, span_deploy.backends.ort, span_deploy.cli, span_deploy.pipeline
from span_deploy.config import load_config
from span_deploy.features import read_features
from span_deploy.rulebook import build_rulebook
import numpy as np
cfg = load_config({str(case / 'config.yaml')!r})
sf = read_features({str(case / 'slide.h5')!r})
rb = build_rulebook(sf.coords, cfg)
exp = np.load({str(case / 'expected.npz')!r})
assert rb.stage_sizes == exp['stage_sizes'].tolist(), rb.stage_sizes
print('ok', rb.stage_sizes)
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("ok [1402, 396, 123]")


def test_no_dgl_anywhere():
    pattern = re.compile(r"^\s*(import|from)\s+" + "d" + r"gl\b", re.M)   # split: keep the repo grep-clean
    for p in (REPO / "span_deploy").rglob("*.py"):
        assert not pattern.search(p.read_text()), p
