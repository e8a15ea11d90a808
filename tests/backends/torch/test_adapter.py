"""The one door to the export side: the torch reference backend, export, on-the-fly export."""
from __future__ import annotations

import numpy as np
import pytest

from span_deploy.backends import Backend, open_backend
from span_deploy.backends.torch import cache_dir, export_cached
from span_deploy.features import read_features
from tests.cases import PUBLIC, ops_library_or_skip

TINY = PUBLIC / "cls_tiny_alltoall"


def test_every_backend_follows_the_protocol():
    ops_library_or_skip()
    ckpt, cfg = TINY / "checkpoint.pt", TINY / "config.yaml"
    sf = read_features(TINY / "slide.h5")
    expected = np.load(TINY / "expected.npz")["logits"].reshape(-1)
    for name in ("torch", "ort", "ort-portable"):
        be = open_backend(name, checkpoint=ckpt, config=cfg)
        assert isinstance(be, Backend), name
        assert be.name == name and be.feat_dim == be.cfg.feat_dim == sf.feats.shape[1]
        assert be.max_tokens is None
        r = be.run(sf.coords, sf.feats)
        np.testing.assert_allclose(r.logits, expected, rtol=0, atol=1e-4)


def test_export_cached_exports_once():
    a = export_cached(TINY / "checkpoint.pt", TINY / "config.yaml", "portable")
    assert a.parent == cache_dir() and a.is_file()
    inode = a.stat().st_ino                      # a re-export would replace the file (a new inode)
    b = export_cached(TINY / "checkpoint.pt", TINY / "config.yaml", "portable")
    assert b == a and b.stat().st_ino == inode
    assert export_cached(TINY / "checkpoint.pt", TINY / "config.yaml", "plugin") != a


def test_open_backend_picks_the_backend_from_the_model():
    model = export_cached(TINY / "checkpoint.pt", TINY / "config.yaml", "portable")
    assert open_backend(model=model).name == "ort-portable"
    assert open_backend(str(model)).name == "ort-portable"
    from span_deploy.errors import BackendError
    with pytest.raises(BackendError, match="is a portable export; use --backend ort-portable"):
        open_backend("ort", model=model)


def test_cache_keeps_the_most_recently_used(tmp_path):
    import os

    from span_deploy.backends.torch import prune_cache
    for i in range(12):
        p = tmp_path / f"span-{i:016x}-portable.onnx"
        p.write_bytes(b"x")
        os.utime(p, (1000 + i, 1000 + i))
    (tmp_path / "other.txt").write_text("kept")
    removed = prune_cache(tmp_path, keep=8)
    assert len(removed) == 4 and all(int(p.name[5:21], 16) < 4 for p in removed)
    assert len(list(tmp_path.glob("span-*.onnx"))) == 8 and (tmp_path / "other.txt").exists()
