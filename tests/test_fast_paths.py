"""The fast paths of issue 7 give what the slow ones would: the decoded-image cache hands the
augmentations the very pixels a fresh decode does, and the batched, on-device views draw their
random parameters per sample from the same distributions as torchvision's per-image transforms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import write_image_folder


def test_the_cache_hands_out_the_same_pixels_as_a_fresh_decode(tmp_path):
    from studio.engine.data import FolderSource, decode_images

    folder = write_image_folder(tmp_path / "imgs", per_class=5, size=20)
    src = FolderSource(folder)
    fresh = decode_images(src, 16, cache_dir=None)
    first = decode_images(src, 16, cache_dir=tmp_path / "cache")  # writes the cache
    again = decode_images(FolderSource(folder), 16, cache_dir=tmp_path / "cache")  # reads it
    assert again.cache_path is not None and again.cache_path == first.cache_path
    for other in (first, again):
        assert np.array_equal(np.asarray(other.images), fresh.images)
        assert np.array_equal(other.labels, fresh.labels)
        assert other.names == fresh.names


def test_same_seed_same_views_whether_images_come_from_the_cache_or_not(tmp_path):
    from studio.engine.data import SampleSource, decode_images
    from studio.engine.data.views import make_view, simclr_view

    src = SampleSource(limit=64)
    spec = simclr_view(16, 0.5)
    views = []
    for cache in (None, tmp_path / "c", tmp_path / "c"):
        images = decode_images(src, 16, cache_dir=cache)
        torch.manual_seed(3)
        views.append(make_view(torch.from_numpy(np.array(images.images)), spec))
    assert torch.equal(views[0], views[1]) and torch.equal(views[0], views[2])


def test_crop_boxes_follow_torchvisions_random_resized_crop_distribution():
    from scipy.stats import ks_2samp
    from torchvision.transforms import RandomResizedCrop

    from studio.engine.data.views import random_resized_crop_boxes

    torch.manual_seed(0)
    n, h, w = 4000, 32, 32
    ours = random_resized_crop_boxes(n, h, w, (0.08, 1.0), (3 / 4, 4 / 3)).numpy()
    img = torch.zeros(3, h, w)
    ref = np.array([RandomResizedCrop.get_params(img, [0.08, 1.0], [3 / 4, 4 / 3]) for _ in range(n)])  # top, left, h, w
    ours_area = ours[:, 2] * ours[:, 3] / (h * w)
    ref_area = ref[:, 2] * ref[:, 3] / (h * w)
    assert ks_2samp(ours_area, ref_area).pvalue > 0.01
    ours_cx = ours[:, 0] + ours[:, 2] / 2
    ref_cx = ref[:, 1] + ref[:, 3] / 2
    assert ks_2samp(ours_cx, ref_cx).pvalue > 0.01
    # every box lies inside the image
    assert (ours[:, 0] >= 0).all() and (ours[:, 0] + ours[:, 2] <= w).all()
    assert (ours[:, 1] >= 0).all() and (ours[:, 1] + ours[:, 3] <= h).all()


@pytest.mark.parametrize("p", [0.2, 0.8])
def test_grayscale_is_drawn_per_sample_at_its_probability(p):
    from studio.engine.data.views import ViewSpec, make_view

    torch.manual_seed(1)
    n = 2000
    x = torch.zeros(n, 3, 8, 8, dtype=torch.uint8)
    x[:, 0] = 255  # pure red: only grayscale makes the channels equal
    spec = ViewSpec(size=8, scale=(1.0, 1.0), ratio=(1.0, 1.0), hflip_p=0.0, jitter_p=0.0, gray_p=p,
                    mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    out = make_view(x, spec)
    gray = (out[:, 0] - out[:, 1]).abs().amax(dim=(1, 2)) < 1e-4
    assert abs(gray.float().mean().item() - p) < 0.04
