"""The preview of a method's views (services.preview): the Trainer's views of real images of the
dataset, mapped back to RGB (issue 16, expected and missing)."""

from __future__ import annotations

import numpy as np
import torch

from tests.conftest import tiny_train_config


def test_simclr_gives_two_views_per_image_at_the_image_size_unlike_each_other_and_the_original(project):
    from studio.services.preview import preview_views

    before = torch.get_rng_state()
    pv = preview_views(project, "sample", tiny_train_config(image_size=24), n=5, seed=3)
    assert torch.equal(torch.get_rng_state(), before)  # a run training beside it keeps its stream
    assert pv.columns == ["original (24 px)", "view 1 (global, 24 px)", "view 2 (global, 24 px)"]
    assert len(pv.rows) == 5 and len({r.name for r in pv.rows}) == 5
    for row in pv.rows:
        assert row.original.shape == (24, 24, 3) and row.original.dtype == np.uint8
        assert [v.shape for v in row.views] == [(24, 24, 3)] * 2 and all(v.dtype == np.uint8 for v in row.views)
        assert row.caption.startswith("class ")
    a = np.stack([r.views[0] for r in pv.rows]).astype(int)
    b = np.stack([r.views[1] for r in pv.rows]).astype(int)
    orig = np.stack([r.original for r in pv.rows]).astype(int)
    assert np.abs(a - b).mean() > 1 and np.abs(a - orig).mean() > 1
    # Un-normalised back to the image's range: the digits' black background stays near black.
    assert a.min() <= 10 and a.max() > 128


def test_the_same_seed_draws_the_same_images_and_views_another_draws_others(project):
    from studio.services.preview import preview_views

    config = tiny_train_config()
    one, two = (preview_views(project, "sample", config, n=3, seed=7) for _ in range(2))
    assert [r.name for r in one.rows] == [r.name for r in two.rows]
    assert all(np.array_equal(x, y) for r, s in zip(one.rows, two.rows) for x, y in zip(r.views, s.views))
    other = preview_views(project, "sample", config, n=3, seed=8)
    assert [r.name for r in other.rows] != [r.name for r in one.rows]


def test_the_preview_makes_the_trainers_views(project):
    """The columns are make_view of the method's view_specs, un-normalised: nothing of its own."""
    from studio.engine.data.views import make_view
    from studio.engine.train import build_method
    from studio.services.preview import preview_views, to_rgb

    config = tiny_train_config(method="byol")
    pv = preview_views(project, "sample", config, n=2, seed=5)
    specs = build_method(config).view_specs(config.image_size)
    images = torch.from_numpy(np.stack([r.original.transpose(2, 0, 1) for r in pv.rows]).copy())
    g = torch.Generator().manual_seed(5)
    expected = [to_rgb(make_view(images, spec, generator=g), spec) for spec in specs]
    for r, row in enumerate(pv.rows):
        assert all(np.array_equal(row.views[j], expected[j][r]) for j in range(len(specs)))


def test_multi_crop_local_views_have_the_local_crop_size(project):
    from studio.services.preview import preview_views

    config = tiny_train_config(method="dino", image_size=32, method_config={"local_crops": 3, "local_crop_size": 12})
    pv = preview_views(project, "sample", config, n=2, seed=0)
    assert pv.labels == ["view 1 (global, 32 px)", "view 2 (global, 32 px)"] + ["view %d (local, 12 px)" % i
                                                                               for i in (3, 4, 5)]
    assert [v.shape[:2] for v in pv.rows[0].views] == [(32, 32)] * 2 + [(12, 12)] * 3


def test_a_masked_image_model_shows_the_patches_it_hides(project):
    from studio.services.preview import MASK_GREY, preview_views

    config = tiny_train_config(method="mae", backbone="vit_tiny", image_size=16,
                               backbone_options={"num_layers": 1, "patch_size": 4},
                               method_config={"mask_ratio": 0.75})
    pv = preview_views(project, "sample", config, n=2, seed=0)
    assert pv.labels == ["view 1 (global, 16 px)", "view 1 masked (75% of patches)"]
    for row in pv.rows:
        view, masked = row.views
        patches = masked.reshape(4, 4, 4, 4, 3).transpose(0, 2, 1, 3, 4).reshape(16, -1)
        grey = (patches == MASK_GREY).all(1)
        assert grey.sum() == 12  # 75 % of the 16 patches
        kept = view.reshape(4, 4, 4, 4, 3).transpose(0, 2, 1, 3, 4).reshape(16, -1)[~grey]
        assert np.array_equal(patches[~grey], kept)
