"""Exports of a CLIP run: both towers in TorchScript and ONNX (checked against PyTorch with
onnxruntime), safetensors with both, the tokenizer named in the card, and the card's snippet
printing an image's and a sentence's similarity as written."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from test_clip_cli import CLIP, TOWERS


@pytest.fixture(scope="module")
def clip_run(tmp_path_factory):
    from studio.cli import main
    from studio.services.datasets import add_dataset
    from studio.store import Project

    root = tmp_path_factory.mktemp("clipexport") / "proj"
    with Project.create(root) as p:
        add_dataset(p, "sample", name="sample")
    assert main(["train", str(root), "--dataset", "sample", *CLIP, *TOWERS, "--steps", "1", "--batch-size", "16"]) == 0
    project = Project.open(root)
    yield project, project.runs()[-1].id
    project.close()


def _model(project, run_id):
    from studio.services.evaluation_text import run_model

    ck = project.latest_checkpoint(run_id)
    return run_model(project, run_id, ck.step, torch.device("cpu"))


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_both_towers_export_and_the_snippet_prints_a_similarity(clip_run, tmp_path, fmt):
    from studio.services.export import export_run

    project, run_id = clip_run
    result = export_run(project, run_id, fmt, out=tmp_path)
    card = result.card
    assert [f.name for f in result.files] == [card["file"], card["text_file"]]
    assert "SimpleTokenizer" in card["tokenizer"] and card["context_length"] == 16 and card["embed_dim"] == 32
    model = _model(project, run_id)
    x = torch.rand(3, 3, 8, 8)
    tokens = model.tokenizer(["a photo of a 3.", "日本語のキャプション", ""])
    with torch.no_grad():
        want_i, want_t = model.encode_image(x).numpy(), model.encode_text(tokens).numpy()
    if fmt == "torchscript":
        got_i = torch.jit.load(str(result.files[0]))(x).detach().numpy()
        got_t = torch.jit.load(str(result.files[1]))(tokens).detach().numpy()
    else:
        import onnxruntime as ort

        got_i = \
            ort.InferenceSession(str(result.files[0])).run(None, {"images": x.numpy()})[0]
        got_t = ort.InferenceSession(str(result.files[1])).run(None, {"tokens": tokens.numpy()})[0]
    assert np.allclose(got_i, want_i, atol=1e-4) and np.allclose(got_t, want_t, atol=1e-4)

    snippet = card["snippet"]
    assert len(snippet.strip().splitlines()) <= 10 and snippet.strip() in result.readme_path.read_text()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(tmp_path / "image.png")
    (tmp_path / "snippet.py").write_text(snippet)
    proc = subprocess.run([sys.executable, "snippet.py"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert -1.0 <= float(proc.stdout.strip()) <= 1.0


def test_safetensors_keeps_both_towers_and_names_the_tokenizer(clip_run, tmp_path):
    from safetensors import safe_open

    from studio.services.export import export_run

    project, run_id = clip_run
    result = export_run(project, run_id, "safetensors", out=tmp_path)
    with safe_open(str(result.files[0]), "pt") as f:
        keys = set(f.keys())
        meta = f.metadata()
    assert any(k.startswith("ssl_heads.text.") for k in keys) and "ssl_heads.image_projection.weight" in keys
    assert "SimpleTokenizer" in meta["tokenizer"] and result.card["heads_included"]
    assert json.loads(json.dumps(result.card))["image_text"] is True
