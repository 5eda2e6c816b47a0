"""`ssl-studio search` and `ssl-studio inspect` (CLI.md) on a folder with planted copies and a
planted odd image: the search by an image file finds its copies first, inspect finds the copies
as a group of near duplicates and the odd image as the first outlier."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from tests.test_cli import one_json, run_cli


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    root = tmp_path_factory.mktemp("search")
    folder = root / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:16, 0:16] / 15.0
    for i in range(20):  # smooth gradients, each its own colours
        a, b, c = rng.uniform(0.2, 1.0, size=3)
        img = np.stack([a * xx, b * yy, c * (1 - xx) * np.ones_like(yy)], -1)
        Image.fromarray((img * 255).astype(np.uint8)).save(folder / f"smooth_{i:02d}.png")
    original = folder / "smooth_03.png"
    shutil.copy(original, folder / "copy-of-03.png")
    Image.fromarray(rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8)).save(folder / "odd.png")  # noise
    project = root / "proj"
    assert run_cli("init", project)[0] == 0
    assert run_cli("dataset", "add", project, folder, "--name", "imgs")[0] == 0
    code, out, err = run_cli("train", project, "--dataset", "imgs", "--method", "simclr", "--backbone", "resnet18",
                             "--image-size", "16", "--device", "cpu", "--steps", "2", "--batch-size", "8", "--json")
    assert code == 0, err
    return project, one_json(out)["run_id"], original


def test_search_by_an_image_file_finds_it_and_its_copy_first(searched):
    project, run_id, original = searched
    code, out, err = run_cli("search", project, run_id, "--image", original, "-k", "3", "--json")
    assert code == 0, err
    result = one_json(out)
    first_two = {hit["image"].replace("\\", "/").split("/")[-1] for hit in result["results"][:2]}
    assert first_two == {original.name, "copy-of-03.png"}
    assert result["results"][0]["similarity"] == pytest.approx(1.0, abs=1e-4)
    assert len(result["results"]) == 3 and result["search"].startswith("exact search over 22")
    code, _, err = run_cli("search", project, run_id, "--image", project / "missing.png")
    assert code == 1 and "not an image file" in err


def test_inspect_finds_the_planted_copies_and_the_odd_image(searched):
    project, run_id, original = searched
    code, out, err = run_cli("inspect", project, run_id, "--duplicates", "--outliers", "2", "-k", "3", "--json")
    assert code == 0, err
    result = one_json(out)
    names = lambda group: {n.replace("\\", "/").split("/")[-1] for n in group}  # noqa: E731
    assert {original.name, "copy-of-03.png"} in [names(g) for g in result["duplicates"]]
    assert result["outliers"][0]["image"].endswith("odd.png")
    assert result["outliers"][0]["score"] > result["outliers"][1]["score"]
    with pytest.raises(SystemExit) as usage:  # wrong usage: exit 2 with the reason
        run_cli("inspect", project, run_id, "--threshold", "0.5")
    assert usage.value.code == 2
