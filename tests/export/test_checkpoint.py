"""Safe checkpoint loading: no pickled code runs, wrappers and prefixes undone, mismatches explained."""
from __future__ import annotations

import pickle

import pytest
import torch
import yaml

from span_deploy.errors import CheckpointError
from span_export.checkpoint import read_state_dict
from span_export.model import load_model
from tests.cases import PUBLIC

CASE = PUBLIC / "cls_tiny_alltoall"


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_pickled_code_is_refused(tmp_path):
    p = tmp_path / "evil.pt"
    torch.save({"model": Evil()}, p)
    with pytest.raises(CheckpointError, match="weights_only=True"):
        read_state_dict(p)
    p2 = tmp_path / "raw.pkl"
    p2.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(CheckpointError, match="refused"):
        read_state_dict(p2)


def test_wrappers_and_prefixes(tmp_path):
    sd = torch.load(CASE / "checkpoint.pt", weights_only=True)
    nested = {"state_dict": {"model": {f"model.module.{k}": v for k, v in sd.items()}}, "epoch": 1}
    torch.save(nested, tmp_path / "w.pt")
    m = load_model(tmp_path / "w.pt", CASE / "config.yaml")
    assert torch.equal(m.state_dict()["encoder.learnable_tokens.0"], sd["encoder.learnable_tokens.0"])


def test_key_mismatch_names_the_knob(tmp_path):
    cfg = yaml.safe_load((CASE / "config.yaml").read_text())
    cfg["model"]["pos_emb"] = "alibi"
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(cfg))
    with pytest.raises(CheckpointError, match=r"(?s)missing.*pos_encoder.slopes.*unexpected.*table_RPB.*model.pos_emb"):
        load_model(CASE / "checkpoint.pt", p)


@pytest.mark.parametrize("content", [b"", b"hello, this is a config file\n", b"model:\n  slide_configs: 111\n"])
def test_a_file_that_is_no_checkpoint_is_named_as_such(tmp_path, content):
    p = tmp_path / "ckpt.pt"
    p.write_bytes(content)
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        read_state_dict(p)
