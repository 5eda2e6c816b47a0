"""Text search with a CLIP run: `search --text` ranks the images of the named class first, in the
run's shared image-text space (not the encoder features the map shows); `--image` and `--text`
exclude each other, and a run without a text tower says so in one line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import write_image_folder
from test_clip_cli import CLIP

# resnet18 at 8 px: 16 steps on these 18 images take its loss to ln 6 (each caption is shared by its
# class's 6 images) and zero-shot top-1 to 1.0, where the one-layer ViT of other tests stays at
# ln 18, unaligned, at any learning rate tried (1e-3 to 1e-2).
TOWERS = ["--backbone", "resnet18", "--image-size", "8", "--device", "cpu", "--monitor-every", "-1", "--json"]

COLOURS = ("red", "green", "blue")
PER_CLASS = 6


@pytest.fixture(scope="module")
def clip_search_project(tmp_path_factory):
    """A project of 18 coloured 8 px images in class folders (templated captions, "a photo of a
    red." ...), a short CLIP run on them and a one-step SimCLR run."""
    from studio.cli import main
    from studio.services.datasets import add_dataset
    from studio.store import Project

    base = tmp_path_factory.mktemp("clipsearch")
    folder = write_image_folder(base / "colours", classes=COLOURS, per_class=PER_CLASS, size=8)
    root = base / "proj"
    with Project.create(root) as p:
        assert add_dataset(p, str(folder), name="colours").templated_captions
    assert main(["train", str(root), "--dataset", "colours", *CLIP, *TOWERS, "--steps", "16", "--batch-size", "18",
                 "--lr", "2e-3", "--seed", "0"]) == 0
    assert main(["train", str(root), "--dataset", "colours", "--method", "simclr", *TOWERS, "--steps", "1",
                 "--batch-size", "6"]) == 0
    with Project.open(root) as p:
        clip_id, simclr_id = (r.id for r in p.runs())
    return root, clip_id, simclr_id


def test_text_search_ranks_the_named_class_first(clip_search_project, capsys):
    from studio.cli import main

    root, clip_id, _ = clip_search_project
    capsys.readouterr()
    for colour in COLOURS:
        assert main(["search", str(root), str(clip_id), "--text", f"a photo of a {colour}.", "-k", str(PER_CLASS),
                     "--device", "cpu", "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        labels = [hit["label"] for hit in out["results"]]
        assert len(labels) == PER_CLASS and labels.count(colour) >= PER_CLASS - 1, (colour, labels)
        sims = [hit["similarity"] for hit in out["results"]]
        assert sims == sorted(sims, reverse=True)
        assert "image-text space" in out["space"]


def test_text_search_compares_in_the_shared_space_not_the_encoder_features(clip_search_project):
    from studio.engine.eval.embed import eval_view
    from studio.engine.eval.zeroshot import embed_texts
    from studio.services.evaluation import compute_embeddings
    from studio.services.evaluation_text import run_model
    from studio.services.explore import TextSearcher
    from studio.store import Project

    root, clip_id, _ = clip_search_project
    with Project.open(root) as project:
        searcher = TextSearcher(project, clip_id, device="cpu")
        data, index = searcher.images()
        model = run_model(project, clip_id, searcher.checkpoint_step, "cpu")
        text = embed_texts(model, ["a photo of a green."])[0]
        import torch

        with torch.no_grad():
            direct = model.encode_image(eval_view(torch.as_tensor(data.images), 8)).numpy()
        idx, sims, _ = searcher.search("a photo of a green.", k=len(data.images))
        assert np.allclose(sims, (direct @ text)[idx], atol=1e-4)
        assert index.dim == model.config.embed_dim == 32
        # The map's embeddings are the encoder's features, another space (and size) altogether.
        assert compute_embeddings(project, clip_id, device="cpu").vectors.shape[1] != index.dim


def test_image_and_text_exclude_each_other_and_a_run_without_a_text_tower_says_so(clip_search_project, capsys, tmp_path):
    from studio.cli import main

    root, clip_id, simclr_id = clip_search_project
    capsys.readouterr()
    with pytest.raises(SystemExit) as usage:
        main(["search", str(root), str(clip_id), "--text", "a red", "--image", str(tmp_path / "x.png")])
    assert usage.value.code == 2
    with pytest.raises(SystemExit) as missing:
        main(["search", str(root), str(clip_id)])
    assert missing.value.code == 2
    capsys.readouterr()
    assert main(["search", str(root), str(simclr_id), "--text", "a photo of a red.", "--device", "cpu"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "text tower" in err and "CLIP" in err
    assert main(["search", str(root), str(clip_id), "--text", "  ", "--device", "cpu"]) == 1
    assert "sentence" in capsys.readouterr().err
