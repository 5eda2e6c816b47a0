"""CLIP through the front door: `train --method clip` on the sample's templated captions, the
image-text evaluations stored like the others, LiT with --init-from / --lock-image, and a clear
error for a dataset without captions."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

TOWERS = ["--backbone", "vit_tiny", "--backbone-option", "num_layers=1", "--backbone-option", "patch_size=4",
          "--image-size", "8", "--device", "cpu", "--monitor-every", "-1", "--json"]
CLIP = ["--method", "clip", "--set", "text_tower=tiny", "--set", "embed_dim=32", "--set", "context_length=16",
        "--lr", "1e-3", "--warmup-epochs", "0"]


def test_train_and_evaluate_clip_then_lit_from_an_ssl_run(project, capsys):
    from studio.cli import main

    root = str(project.root)
    assert project.dataset("sample").templated_captions
    assert main(["train", root, "--dataset", "sample", *CLIP, *TOWERS, "--steps", "4", "--batch-size", "64"]) == 0
    clip = json.loads(capsys.readouterr().out)
    assert clip["status"] == "finished"
    assert main(["eval", root, str(clip["run_id"]), "--tasks", "zeroshot,text_retrieval", "--device", "cpu",
                 "--template", "a photo of a {class}.", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert 0.0 <= out["zeroshot_top1"] <= 1.0
    assert set(out["text_retrieval"]) == {f"{d}_recall@{k}" for d in ("image_to_text", "text_to_image") for k in (1, 5, 10)}
    stored = {e.kind: e.metrics for e in project.evaluations(clip["run_id"])}
    assert stored["zeroshot"]["settings"]["templates"] == ["a photo of a {class}."]
    assert stored["text_retrieval"]["settings"]["templated_captions"] is True
    from studio.services.evaluation import evaluation_summary

    assert evaluation_summary(project, clip["run_id"])["zeroshot_top1"] == out["zeroshot_top1"]

    # "all" on a CLIP run includes the image-text tasks
    assert main(["eval", root, str(clip["run_id"]), "--tasks", "zeroshot", "--step", "0", "--device", "cpu", "--json"]) == 0
    capsys.readouterr()

    # LiT: an SSL run's encoder, locked, under a new text tower
    assert main(["train", root, "--dataset", "sample", "--method", "simclr", *TOWERS, "--steps", "2", "--batch-size", "32"]) == 0
    ssl = json.loads(capsys.readouterr().out)
    assert main(["train", root, "--dataset", "sample", *CLIP, *TOWERS, "--steps", "2", "--batch-size", "64",
                 "--init-from", str(ssl["run_id"]), "--lock-image"]) == 0
    lit = json.loads(capsys.readouterr().out)
    assert lit["status"] == "finished"
    config = project.run(lit["run_id"]).config
    assert config["init_from"] == f"runs/{ssl['run_id']}/last.ckpt" and config["method_config"]["lock_image"] is True


def test_clip_on_images_without_captions_says_what_to_add(tmp_path, capsys):
    from studio.cli import main
    from studio.services.datasets import add_dataset
    from studio.store import Project

    folder = tmp_path / "flat"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    with Project.create(tmp_path / "proj") as p:
        assert add_dataset(p, str(folder), name="flat").captions == 0
    code = main(["train", str(tmp_path / "proj"), "--dataset", "flat", *CLIP, *TOWERS, "--steps", "1", "--batch-size", "6"])
    err = capsys.readouterr().err
    assert code == 1 and "captions" in err and "name.txt" in err


def test_init_from_a_run_without_that_checkpoint_is_refused_before_anything_is_stored(project, capsys):
    import pytest
    from conftest import tiny_train_config

    from studio.cli import main
    from studio.engine.errors import ConfigError
    from studio.services.training import create_run

    code = main(["train", str(project.root), "--dataset", "sample", *CLIP, *TOWERS, "--steps", "1", "--init-from", "7"])
    assert code == 1 and "run" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="not in the project"):
        create_run(project, "sample", tiny_train_config(init_from="runs/9/last.ckpt"))
    assert project.runs() == []
