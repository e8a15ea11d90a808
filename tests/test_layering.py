"""The architecture holds: the runtime (span_deploy/) never imports torch or the export side
(span_export), except the one adapter; nothing imports dgl; the runtime works with torch blocked."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.cases import PUBLIC, REPO

RUNTIME = REPO / "span_deploy"
EXPORT = REPO / "export" / "span_export"
ADAPTER = RUNTIME / "backends" / "torch" / "__init__.py"
TORCH_SIDE = {"torch", "torchvision", "span_export", "safetensors", "onnxscript"}


def absolute_imports(path: Path) -> set[str]:
    """Top-level names of every absolute import in a file, wherever it sits (function bodies
    included), plus importlib.import_module / __import__ calls with a literal name."""
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            f = node.func
            fname = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
            if fname in ("import_module", "__import__"):
                names.add(node.args[0].value.split(".")[0])
    return names


def test_absolute_imports_sees_what_it_must(tmp_path):
    """The checker itself: lazy imports, from-imports and import_module are all caught."""
    p = tmp_path / "m.py"
    p.write_text("import os\ndef f():\n    import torch.nn as nn\n    from span_export.model import x\n"
                 "    from .torch import y\n    importlib.import_module('safetensors.torch')\n")
    assert absolute_imports(p) == {"os", "torch", "span_export", "safetensors"}


def test_runtime_never_imports_the_torch_side():
    offenders = {}
    for p in sorted(RUNTIME.rglob("*.py")):
        bad = absolute_imports(p) & TORCH_SIDE
        if p == ADAPTER:
            assert bad == {"span_export"}, f"the adapter should reach torch only through span_export: {bad}"
            continue
        if bad:
            offenders[str(p.relative_to(REPO))] = sorted(bad)
    assert not offenders, f"runtime modules importing the torch side: {offenders}"


def test_export_side_is_its_own_package():
    assert (REPO / "export" / "pyproject.toml").is_file() and (EXPORT / "__init__.py").is_file()
    uses_torch = [p for p in EXPORT.rglob("*.py") if "torch" in absolute_imports(p)]
    assert uses_torch, "the export side is where torch lives"


def test_no_dgl_anywhere():
    for root in (RUNTIME, EXPORT, REPO / "tests", REPO / "bench", REPO / "samples"):
        for p in root.rglob("*.py"):
            assert "dgl" not in absolute_imports(p), p


BLOCK = ("import sys\nfor m in ('torch', 'span_export', 'dgl'):\n    sys.modules[m] = None\n")


def test_runtime_runs_with_the_torch_side_blocked():
    """Import every runtime module and build a golden rulebook with torch and span_export
    unimportable; the torch backend then says how to install the export side."""
    case = PUBLIC / "cls_default_r50"
    code = BLOCK + f"""
import importlib, pkgutil
import span_deploy
for m in pkgutil.walk_packages(span_deploy.__path__, 'span_deploy.'):
    importlib.import_module(m.name)
from span_deploy.config import load_config
from span_deploy.features import read_features
from span_deploy.rulebook import build_rulebook
from span_deploy.backends import available_backends, open_backend
from span_deploy.errors import BackendError
import numpy as np
cfg = load_config({str(case / 'config.yaml')!r})
sf = read_features({str(case / 'slide.h5')!r})
rb = build_rulebook(sf.coords, cfg)
exp = np.load({str(case / 'expected.npz')!r})
assert rb.stage_sizes == exp['stage_sizes'].tolist(), rb.stage_sizes
assert 'torch' not in available_backends()
try:
    open_backend('torch', checkpoint={str(case / 'checkpoint.pt')!r}, config={str(case / 'config.yaml')!r})
except BackendError as e:
    assert 'pip install -e ./export' in str(e), e
else:
    raise AssertionError('torch backend opened without torch')
print('ok', rb.stage_sizes)
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("ok [1402, 396, 123]")
