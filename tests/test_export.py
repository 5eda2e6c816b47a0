"""Exports: every format reproduces the in-memory encoder, weights load strictly into a fresh
library model, the card's snippet runs as written, embeddings files line up with the dataset, and
every export is recorded in the project."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import tiny_train_config, write_image_folder

ATOL = 1e-4
BACKBONES = {
    "resnet18": {},
    "vit_tiny": {"num_layers": 2, "patch_size": 4},
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One project, a 3-step run per backbone on the sample (vit_tiny also keeps step 2), and a
    small labelled folder dataset 'shapes' for the embeddings."""
    from studio.services.datasets import add_dataset
    from studio.services.training import create_run, execute_run
    from studio.store import Project

    root = tmp_path_factory.mktemp("export")
    project = Project.create(root / "proj")
    add_dataset(project, "sample", name="sample")
    add_dataset(project, str(write_image_folder(root / "shapes", per_class=5, size=20)), name="shapes")
    runs = {}
    for name, options in BACKBONES.items():
        config = tiny_train_config(backbone=name, backbone_options=options, steps=3, batch_size=8,
                                   monitor_every=-1, checkpoint_every=2 if name == "vit_tiny" else 0)
        run = create_run(project, "sample", config)
        result = execute_run(project, run.id)
        assert result.status == "finished"
        runs[name] = run.id
    yield project, runs
    project.close()


@pytest.fixture(scope="module")
def sample_batch(trained):
    """Five sample images through the eval view, as the encoder sees them."""
    from studio.engine.data.views import eval_view
    from studio.services.datasets import load_images

    project, _ = trained
    images = load_images(project, project.dataset("sample"), 16)
    return eval_view(torch.from_numpy(np.array(images.images[:5])))


def _reference(project, run_id, x, step=None):
    from studio.engine.train.checkpoint import load_encoder
    from studio.services.export import resolve_checkpoint

    ck = resolve_checkpoint(project, run_id, step)
    encoder, _, _ = load_encoder(project.abs(ck.path))
    with torch.no_grad():
        return encoder(x).numpy()


def _rebuild_from_card(card):
    """Build the library model only from what the card says, as a user would."""
    import torchvision
    from torchvision.models.vision_transformer import VisionTransformer

    b = card["backbone"]
    assert b["library"] == "torchvision"
    if b["builder"] == "VisionTransformer":
        model = VisionTransformer(**b["kwargs"])
    else:
        model = getattr(torchvision.models, b["builder"])(**b["kwargs"])
    if b.get("small_image_stem"):
        model.conv1.stride = (1, 1)
        model.maxpool = torch.nn.Identity()
    return model


def _drop_head(model, card):
    if card["backbone"]["builder"] == "VisionTransformer":
        model.heads = torch.nn.Identity()
    else:
        model.fc = torch.nn.Identity()
    return model.eval()


@pytest.mark.parametrize("backbone", list(BACKBONES))
@pytest.mark.parametrize("fmt", ["exported-program", "torchscript", "onnx", "torchvision", "safetensors"])
def test_export_reproduces_the_encoder(trained, sample_batch, tmp_path, backbone, fmt):
    from studio.services.export import export_run

    project, runs = trained
    run_id = runs[backbone]
    result = export_run(project, run_id, fmt, out=tmp_path / "out")
    want = _reference(project, run_id, sample_batch)
    card = json.loads(result.card_path.read_text())
    assert card["feature_dim"] == want.shape[1] == {"resnet18": 512, "vit_tiny": 192}[backbone]
    assert card["format"] == fmt and card["method"] == "simclr" and card["image_size"] == 16
    assert card["steps"] == 3 and card["dataset"]["name"] == "sample"

    if fmt == "exported-program":
        # Traced on a batch of 2: five images prove the batch dimension stayed free.
        assert result.path.name == "encoder.pt2"
        model = torch.export.load(str(result.path)).module()
        with torch.no_grad():
            got = model(sample_batch).numpy()
    elif fmt == "torchscript":
        model = torch.jit.load(str(result.path)).eval()
        with torch.no_grad():
            got = model(sample_batch).numpy()
    elif fmt == "onnx":
        import onnx
        import onnxruntime as ort

        graph = onnx.load(str(result.path))
        onnx.checker.check_model(graph)
        assert max(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")) >= 17
        assert graph.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # batch axis is symbolic
        session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
        got = session.run(None, {"images": sample_batch.numpy()})[0]
    else:
        if fmt == "torchvision":
            state = torch.load(result.path, weights_only=True)
        else:
            from safetensors.torch import load_file

            state = load_file(str(result.path))
        model = _rebuild_from_card(card)
        model.load_state_dict(state, strict=True)
        with torch.no_grad():
            got = _drop_head(model, card)(sample_batch).numpy()
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=ATOL, rtol=0)
    # A trained encoder, not a fresh one: a random model gives other features.
    fresh = _rebuild_from_card(card) if fmt in ("torchvision", "safetensors") else None
    if fresh is not None:
        with torch.no_grad():
            assert np.abs(_drop_head(fresh, card)(sample_batch).numpy() - want).max() > 1e-3

    records = project.exports(run_id)
    assert records[-1].format == fmt and records[-1].checkpoint_step == 3
    assert Path(records[-1].path) == result.path.resolve()  # outside the project: stored absolute
    assert records[-1].card["feature_dim"] == card["feature_dim"]


def _write_png(path: Path, size: int = 24) -> None:
    from PIL import Image

    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, size=(size, size + 5, 3), dtype=np.uint8)).save(path)


SNIPPET_CASES = [
    ("resnet18", "exported-program", False),
    ("vit_tiny", "exported-program", True),
    ("resnet18", "torchscript", False),
    ("resnet18", "onnx", False),
    ("resnet18", "torchvision", False),
    ("resnet18", "safetensors", True),
    ("vit_tiny", "torchvision", False),
    ("vit_tiny", "safetensors", False),
    ("resnet18", "embeddings-npy", False),
    ("resnet18", "embeddings-csv", False),
]


# Runs each snippet file, as written, from its own folder, in one fresh interpreter (importing
# torch once instead of eight times keeps the test fast on two cores).
SNIPPET_DRIVER = """
import os, runpy, sys, traceback
for folder in sys.argv[1:]:
    os.chdir(folder)
    print("=== " + folder, flush=True)
    try:
        runpy.run_path("snippet.py", run_name="__main__")
    except BaseException:
        print("FAILED " + traceback.format_exc(), flush=True)
"""


def test_card_snippets_run_as_written(trained, tmp_path):
    """Each snippet is at most ten lines and, run with this Python in the export's folder on a
    PNG, prints the feature size."""
    from studio.services.export import export_run

    project, runs = trained
    jobs = []
    for i, (backbone, fmt, heads) in enumerate(SNIPPET_CASES):
        folder = tmp_path / f"{i}-{backbone}-{fmt}"
        result = export_run(project, runs[backbone], fmt, out=folder, with_heads=heads,
                            dataset="shapes" if fmt.startswith("embeddings") else None)
        text = result.card["snippet"]
        assert len(text.strip().splitlines()) <= 10, text
        assert text.strip() in result.readme_path.read_text()
        (folder / "snippet.py").write_text(text)
        _write_png(folder / "image.png")
        jobs.append((backbone, fmt, result.card["feature_dim"], folder))
    (tmp_path / "driver.py").write_text(SNIPPET_DRIVER)
    proc = subprocess.run([sys.executable, str(tmp_path / "driver.py"), *[str(j[3]) for j in jobs]],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    outputs = proc.stdout.split("=== ")[1:]
    assert len(outputs) == len(jobs), proc.stdout
    for (backbone, fmt, dim, folder), out in zip(jobs, outputs):
        assert out.startswith(str(folder)) and "FAILED" not in out, out
        expected = f"(10, {dim})" if fmt.startswith("embeddings") else f"(1, {dim})"
        assert expected in out, f"{backbone} {fmt}: {out!r}"


def test_embeddings_csv_and_npy_line_up_with_the_dataset(trained, tmp_path):
    from studio.engine.data.views import eval_view
    from studio.services.datasets import load_images
    from studio.services.export import export_run

    project, runs = trained
    run_id = runs["resnet18"]
    images = load_images(project, project.dataset("shapes"), 16)
    want = _reference(project, run_id, eval_view(torch.from_numpy(np.array(images.images))))
    assert want.shape == (10, 512)

    npy = export_run(project, run_id, "embeddings-npy", out=project.root / "exports" / "shapes.npy", dataset="shapes")
    features = np.load(npy.path)
    np.testing.assert_allclose(features, want, atol=ATOL, rtol=0)
    with open(npy.files[1], newline="") as f:
        index = list(csv.DictReader(f))
    assert [r["path"] for r in index] == list(images.names)
    assert [int(r["label"]) for r in index] == [int(v) for v in images.labels]
    assert {r["class"] for r in index} == {"cats", "dogs"}
    assert npy.to_json(project)["path"] == "exports/shapes.npy"  # inside the project: relative
    assert npy.card["embeddings"] == {"dataset": "shapes", "count": 10, "dim": 512, "view": npy.card["embeddings"]["view"]}

    out = export_run(project, run_id, "embeddings-csv", out=tmp_path / "shapes.csv", dataset="shapes")
    with open(out.path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 10
    assert [r["path"] for r in rows] == list(images.names)
    assert [r["class"] for r in rows] == [images.class_names[int(v)] for v in images.labels]
    table = np.array([[float(r[f"f{i}"]) for i in range(512)] for r in rows])
    np.testing.assert_allclose(table, want, atol=ATOL, rtol=0)
    kinds = [e.format for e in project.exports(run_id)]
    assert "embeddings-npy" in kinds and "embeddings-csv" in kinds


def test_embeddings_parquet(trained, tmp_path):
    from studio.engine.export import ExportError, parquet_available
    from studio.services.export import export_run

    project, runs = trained
    if not parquet_available():
        with pytest.raises(ExportError, match="pyarrow"):
            export_run(project, runs["vit_tiny"], "embeddings-parquet", out=tmp_path / "e.parquet", dataset="shapes")
        assert not (tmp_path / "e.parquet").exists()
        return
    import pyarrow.parquet as pq

    result = export_run(project, runs["vit_tiny"], "embeddings-parquet", out=tmp_path / "e.parquet", dataset="shapes")
    table = pq.read_table(result.path)
    assert table.num_rows == 10 and np.stack(table.column("embedding").to_numpy(zero_copy_only=False)).shape == (10, 192)


def test_chosen_checkpoint_and_heads(trained, sample_batch, tmp_path):
    from safetensors.torch import load_file

    from studio.engine.export import HEADS_PREFIX
    from studio.services.export import export_run

    project, runs = trained
    run_id = runs["vit_tiny"]
    # Step 2 (an older checkpoint) exports its own weights, not the newest ones.
    result = export_run(project, run_id, "safetensors", out=tmp_path / "s2.safetensors", checkpoint_step=2, with_heads=True)
    assert result.card["checkpoint_step"] == 2 and result.card["heads_included"]
    state = load_file(str(result.path))
    heads = {k for k in state if k.startswith(HEADS_PREFIX)}
    assert any(k.startswith(HEADS_PREFIX + "projection_head.") for k in heads)
    model = _rebuild_from_card(result.card)
    model.load_state_dict({k: v for k, v in state.items() if k not in heads}, strict=True)
    with torch.no_grad():
        got = _drop_head(model, result.card)(sample_batch).numpy()
    np.testing.assert_allclose(got, _reference(project, run_id, sample_batch, step=2), atol=ATOL, rtol=0)
    assert np.abs(got - _reference(project, run_id, sample_batch)).max() > 1e-4
    assert project.exports(run_id)[-1].checkpoint_step == 2

    # TorchScript and ONNX with heads return (features, projections).
    ts = export_run(project, run_id, "torchscript", out=tmp_path / "h.pt", with_heads=True)
    with torch.no_grad():
        features, projections = torch.jit.load(str(ts.path))(sample_batch)
    assert features.shape == (5, 192) and projections.shape == (5, 128)
    assert (tmp_path / "h.card.json").is_file() and (tmp_path / "h.README.md").is_file()
    import onnxruntime as ort

    onnx_export = export_run(project, run_id, "onnx", out=tmp_path / "ho.onnx", with_heads=True)
    session = ort.InferenceSession(str(onnx_export.path), providers=["CPUExecutionProvider"])
    f2, p2 = session.run(["features", "projections"], {"images": sample_batch.numpy()})
    np.testing.assert_allclose(f2, features.numpy(), atol=ATOL, rtol=0)
    np.testing.assert_allclose(p2, projections.numpy(), atol=ATOL, rtol=0)


def test_missing_checkpoint_step_is_a_clear_error(trained):
    from studio.engine.errors import CheckpointError
    from studio.services.export import export_run

    project, runs = trained
    with pytest.raises(CheckpointError, match=r"no checkpoint at step 7 \(steps with a checkpoint: 2, 3\)"):
        export_run(project, runs["vit_tiny"], "onnx", checkpoint_step=7)


def test_cli_export_json(trained, capsys):
    from studio.cli import main

    project, runs = trained
    run_id = runs["vit_tiny"]
    before = len(project.exports(run_id))
    code = main(["export", str(project.root), str(run_id), "--format", "onnx",
                 "--out", str(project.root / "exports" / "vit.onnx"), "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    payload = json.loads(captured.out)  # exactly one JSON object on stdout
    assert payload["run_id"] == run_id and payload["format"] == "onnx" and payload["checkpoint_step"] == 3
    assert payload["path"] == "exports/vit.onnx" and payload["card"] == "exports/vit.card.json"
    assert payload["feature_dim"] == 192
    assert (project.root / payload["path"]).is_file()
    assert json.loads((project.root / payload["card"]).read_text())["backbone"]["name"] == "vit_tiny"
    exports = project.exports(run_id)
    assert len(exports) == before + 1 and exports[-1].path == "exports/vit.onnx" and exports[-1].id == payload["export_id"]

    code = main(["export", str(project.root), str(run_id), "--format", "onnx", "--checkpoint", "99", "--json"])
    captured = capsys.readouterr()
    assert code == 1 and captured.out == "" and "no checkpoint at step 99" in captured.err


@pytest.mark.parametrize("backbone", list(BACKBONES))
def test_exported_program_takes_any_batch_size_and_its_card_says_how_to_load_it(trained, backbone, tmp_path):
    from studio.engine.data.views import eval_view
    from studio.services.datasets import load_images
    from studio.services.export import export_run

    project, runs = trained
    run_id = runs[backbone]
    result = export_run(project, run_id, "exported-program", out=tmp_path / f"{backbone}.pt2", with_heads=True)
    program = torch.export.load(str(result.path))
    assert isinstance(program, torch.export.ExportedProgram)
    model = program.module()
    images = eval_view(torch.from_numpy(np.array(load_images(project, project.dataset("shapes"), 16).images)))
    for batch in (1, 7):  # neither is the traced batch of 2
        x = images[:batch]
        features, projections = model(x)
        want = torch.from_numpy(_reference(project, run_id, x))
        assert features.shape == want.shape == (batch, {"resnet18": 512, "vit_tiny": 192}[backbone])
        torch.testing.assert_close(features.detach(), want, atol=1e-5, rtol=0)
        assert projections.shape[0] == batch
    card, text = result.card, result.readme_path.read_text()
    assert card["format"] == "exported-program" and card["heads_included"]
    assert card["format_title"] == "torch.export ExportedProgram"
    assert f'torch.export.load("{backbone}.pt2").module()' in card["snippet"]
    assert "features, projections = model(x)" in card["snippet"]
    assert "T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))" in card["snippet"]  # the preprocessing
    assert "recommends" in text and "TorchScript is deprecated" in text and "any batch size" in text
    assert "and the method's projections" in text


class _FixedBatch(torch.nn.Module):
    def forward(self, x):
        return x.reshape(2, -1)  # bakes the batch size in


class _DataDependent(torch.nn.Module):
    def forward(self, x):
        return x.flatten(1) if x.sum() > 0 else -x.flatten(1)


@pytest.mark.parametrize("module, words", [(_FixedBatch(), "cannot keep the batch size free"),
                                           (_DataDependent(), "cannot trace this encoder")])
def test_an_encoder_torch_export_cannot_take_is_a_clear_error(module, words, tmp_path, capfd):
    from studio.engine.export import ExportError
    from studio.engine.export.exported_program import export_program

    with pytest.raises(ExportError, match=words) as info:
        export_program(module, 4, tmp_path / "m.pt2")
    message = str(info.value)
    assert "export to ONNX" in message and "\n" not in message and len(message) < 400
    assert not list(tmp_path.iterdir())  # no file, not even half a one
    err = capfd.readouterr().err  # torch's partial graph and guard warnings stay off the terminal
    assert "Traceback" not in err and "def forward" not in err and "symbolic_shapes" not in err, err


def test_cli_export_exported_program(trained, capsys, monkeypatch):
    from studio.cli import main
    from studio.cli.export import FORMAT_HELP
    from studio.engine.export import FORMATS

    project, runs = trained
    run_id = runs["resnet18"]
    assert all(fmt in FORMAT_HELP for fmt in FORMATS)  # the help names the one table's formats
    code = main(["export", str(project.root), str(run_id), "--format", "exported-program"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    rel = f"exports/run-{run_id}-step-3-exported-program/encoder.pt2"
    assert f"as exported-program: {rel}" in captured.err and captured.out == ""
    assert (project.root / rel).is_file()

    code = main(["export", str(project.root), str(run_id), "--format", "exported-program",
                 "--out", str(project.root / "exports" / "r.pt2"), "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    payload = json.loads(captured.out)
    assert payload["format"] == "exported-program" and payload["path"] == "exports/r.pt2"
    assert payload["card"] == "exports/r.card.json" and payload["feature_dim"] == 512
    assert project.exports(run_id)[-1].format == "exported-program"

    # When torch.export fails, one line says so and what to do; no traceback, exit 1.
    def refuse(*args, **kwargs):
        raise RuntimeError("Dynamic control flow is not supported\nmore detail")

    monkeypatch.setattr(torch.export, "export", refuse)
    code = main(["export", str(project.root), str(run_id), "--format", "exported-program",
                 "--out", str(project.root / "exports" / "refused.pt2"), "--json"])
    captured = capsys.readouterr()
    assert code == 1 and captured.out == ""
    assert "torch.export cannot trace this encoder (RuntimeError: Dynamic control flow is not supported)" in captured.err
    assert "Traceback" not in captured.err and not (project.root / "exports" / "refused.pt2").exists()


def test_a_destination_follows_the_format():
    from studio.services.export import output_for_format

    assert output_for_format("/p/exports/run-1-step-3-torchscript", "torchscript", "exported-program") == \
        Path("/p/exports/run-1-step-3-exported-program")
    assert output_for_format("/o/encoder.torchscript.pt", "torchscript", "onnx") == Path("/o/encoder.onnx")
    assert output_for_format("/o/mine.pt", "torchscript", "exported-program") == Path("/o/mine.pt2")
    assert output_for_format("/o/mine.onnx", "onnx", "embeddings-npy") == Path("/o/mine.npy")
    assert output_for_format("/o/models", "onnx", "safetensors") == Path("/o/models")  # a folder is kept
    assert output_for_format("/o/encoder.pt2", "exported-program", "safetensors") == Path("/o/encoder.safetensors")


def test_engine_export_imports_without_qt_or_store():
    code = ("import sys; sys.modules['PySide6'] = None; sys.modules['sqlalchemy'] = None; "
            "import studio.engine.export, studio.engine.export.onnx_export, studio.engine.export.torchscript, "
            "studio.engine.export.exported_program")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_card_carries_evaluations_and_cancel_leaves_nothing(trained, tmp_path):
    from studio.engine.export import ExportCancelled
    from studio.services.export import export_run

    project, runs = trained
    run_id = runs["vit_tiny"]
    project.add_evaluation(run_id, "knn", {"knn_top1": 0.625, "k": 20}, checkpoint_step=3, dataset_id=project.dataset("sample").id)
    result = export_run(project, run_id, "torchvision", out=tmp_path / "w")
    assert result.card["evaluations"] == [{"kind": "knn", "metrics": {"knn_top1": 0.625, "k": 20}, "checkpoint_step": 3, "dataset": "sample"}]
    text = result.readme_path.read_text()
    assert "knn at step 3: knn_top1 0.625, k 20" in text
    assert "VisionTransformer(num_layers=2, num_heads=3, hidden_dim=192, mlp_dim=768, image_size=16, patch_size=4)" in text
    assert result.card["studio_version"] and result.card["input"]["mean"] == [0.485, 0.456, 0.406]

    before = len(project.exports(run_id))
    asked = []

    def stop_midway() -> bool:  # let the first batch through, then stop
        asked.append(1)
        return len(asked) > 3

    with pytest.raises(ExportCancelled):
        export_run(project, run_id, "embeddings-npy", out=tmp_path / "c.npy", dataset="shapes", batch_size=4,
                   should_stop=stop_midway)
    assert len(asked) == 4
    assert not (tmp_path / "c.npy").exists() and not (tmp_path / "c.card.json").exists()
    assert len(project.exports(run_id)) == before
