"""Every config.pbtxt `span-deploy triton export` writes parses with Triton's model-config schema
(tritonclient's protobuf) and says what is served. No server needed."""
from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from span_deploy.cli import cli
from span_deploy.serving.triton.repository import parse_config, write_repository
from tests.cases import REPO

DEMO = REPO / "samples" / "demo"
pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="tritonclient (pip install 'span-deploy[triton]')")


def dims(t) -> list[int]:
    return list(t.dims)


def test_cli_export_writes_parsable_configs(tmp_path):
    res = CliRunner().invoke(cli, ["triton", "export", "--model", str(DEMO / "span.onnx"), "--encoder",
                                   str(DEMO / "encoder.onnx"), "--output", str(tmp_path / "repo"),
                                   "--instances", "3", "--encoder-batch", "32"])
    assert res.exit_code == 0, res.output
    repo = tmp_path / "repo"
    assert sorted(p.parent.name for p in repo.glob("*/config.pbtxt")) == ["patch_encoder", "span_features",
                                                                          "span_slide"]
    f = parse_config(repo / "span_features" / "config.pbtxt")
    assert f.backend == "python" and f.max_batch_size == 0
    assert [(i.name, i.data_type, dims(i)) for i in f.input] == [("FEATURES", 11, [-1, 512]), ("COORDS", 9, [-1, 2])]
    assert [o.name for o in f.output] == ["LOGITS", "SLIDE_EMBEDDING", "PATCH_SCORES"]
    assert dims(f.output[0]) == [2]
    assert f.instance_group[0].count == 3 and f.instance_group[0].kind == 2   # KIND_CPU
    assert (repo / "span_features" / "1" / "model.onnx").read_bytes() == (DEMO / "span.onnx").read_bytes()
    assert "span_deploy.serving.triton.models.span_features" in (repo / "span_features" / "1" / "model.py").read_text()
    e = parse_config(repo / "patch_encoder" / "config.pbtxt")
    assert e.max_batch_size == 32 and e.HasField("dynamic_batching")
    assert [(i.name, i.data_type, dims(i)) for i in e.input] == [("TILES", 2, [224, 224, 3])]   # TYPE_UINT8
    assert [(o.name, dims(o)) for o in e.output] == [("FEATURES", [512])]
    s = parse_config(repo / "span_slide" / "config.pbtxt")
    assert s.max_batch_size == 0 and [dims(i) for i in s.input] == [[-1, 224, 224, 3], [-1, 2]]
    assert s.parameters["encoder_chunk"].string_value == "32" and s.parameters["encoder_inflight"].string_value == "3"
    res = CliRunner().invoke(cli, ["triton", "export", "--model", str(DEMO / "span.onnx"), "--output", str(repo)])
    assert res.exit_code != 0 and "--overwrite" in str(res.exception or res.output)


def test_segmentation_and_gpu_configs(tmp_path):
    seg = DEMO / "segmentation" / "span.onnx"
    if not seg.is_file():
        pytest.skip("no demo segmentation model")
    for p in write_repository(seg, tmp_path, kind="gpu", instances=2):
        c = parse_config(p)
        assert c.instance_group[0].kind == 1   # KIND_GPU
    f = parse_config(tmp_path / "span_features" / "config.pbtxt")
    assert [o.name for o in f.output] == ["LOGITS", "SLIDE_EMBEDDING", "PATCH_SCORES", "PATCH_PROBABILITIES",
                                          "PATCH_LOGITS"]
    assert dims(f.output[0]) == [-1] and f.parameters["task"].string_value == "segmentation"


def test_encoder_dim_must_match(tmp_path):
    from span_deploy.errors import ConfigError
    seg_or_cls = DEMO / "span.onnx"
    with pytest.raises(ConfigError, match="not found"):
        write_repository(seg_or_cls, tmp_path, encoder=tmp_path / "none.onnx")
    with pytest.raises(ConfigError, match="model file not found"):
        write_repository(Path(tmp_path / "x.onnx"), tmp_path)


def test_encoder_on_the_onnxruntime_backend(tmp_path):
    """--encoder-backend onnxruntime: Triton's own backend serves the ONNX's tensor names, so the copy
    is renamed TILES -> FEATURES and computes the same features (the pytriton server build ships no
    onnxruntime backend, so this is checked with ONNX Runtime here, not on a server)."""
    import numpy as np
    import onnxruntime as ort

    from span_deploy.encoders.runner import OnnxEncoder

    write_repository(DEMO / "span.onnx", tmp_path, encoder=DEMO / "encoder.onnx", encoder_backend="onnxruntime",
                     threads=2)
    c = parse_config(tmp_path / "patch_encoder" / "config.pbtxt")
    assert c.backend == "onnxruntime" and c.max_batch_size == 64 and c.HasField("dynamic_batching")
    assert c.parameters["intra_op_thread_count"].string_value == "2"
    assert not (tmp_path / "patch_encoder" / "1" / "model.py").exists()
    s = ort.InferenceSession(str(tmp_path / "patch_encoder" / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in s.get_inputs()] == ["TILES"] and [o.name for o in s.get_outputs()] == ["FEATURES"]
    tiles = np.random.default_rng(0).integers(0, 256, (3, 224, 224, 3), dtype=np.uint8)
    np.testing.assert_array_equal(s.run(["FEATURES"], {"TILES": tiles})[0], OnnxEncoder(DEMO / "encoder.onnx")(tiles))


def test_auto_picks_python_without_an_onnxruntime_backend(tmp_path, monkeypatch):
    from span_deploy.serving.triton import repository

    monkeypatch.setenv("SPAN_TRITONSERVER", str(tmp_path / "nothing"))
    assert repository.pick_encoder_backend("auto") == "python"
    write_repository(DEMO / "span.onnx", tmp_path / "r", encoder=DEMO / "encoder.onnx")
    assert parse_config(tmp_path / "r" / "patch_encoder" / "config.pbtxt").backend == "python"
