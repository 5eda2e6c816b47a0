"""Image sources, the decoded-image cache and batched views."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import write_image_folder
from studio.engine.data import FolderSource, SampleSource, decode_images
from studio.engine.data.views import ViewSpec, make_view, simclr_view


def test_class_subfolders_give_labels(tmp_path):
    root = write_image_folder(tmp_path / "pets", classes=("cats", "dogs", "fish"), per_class=3)
    src = FolderSource(root)
    assert src.class_names == ["cats", "dogs", "fish"]
    assert src.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert [os.path.basename(os.path.dirname(src.name(i))) for i in (0, 3, 8)] == ["cats", "dogs", "fish"]
    info = src.verify()
    assert (info.images, info.classes, info.skipped) == (9, 3, [])


def test_a_flat_folder_is_unlabelled(tmp_path):
    root = tmp_path / "flat"
    root.mkdir()
    for i in range(4):
        Image.new("RGB", (10, 10), (i * 40, 0, 0)).save(root / f"{i}.jpg")
    src = FolderSource(root)
    assert len(src) == 4
    assert src.class_names == [] and not src.has_labels
    assert src.labels.tolist() == [-1, -1, -1, -1]
    assert src.verify().classes == 0


def _save(img: Image.Image, path):
    img.save(path)
    return path


def test_every_image_mode_becomes_rgb(tmp_path):
    root = tmp_path / "modes"
    root.mkdir()
    gray = _save(Image.new("L", (6, 4), 77), root / "gray.png")
    rgba = np.zeros((4, 6, 4), np.uint8)
    rgba[:, :3] = (255, 0, 0, 255)  # left half opaque red, right half fully transparent
    rgba_path = _save(Image.fromarray(rgba, "RGBA"), root / "rgba.png")
    palette = Image.new("P", (6, 4), 1)
    palette.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    palette_path = _save(palette, root / "palette.png")
    deep = np.full((4, 6), 65535, np.uint16)
    deep[:, :3] = 0
    deep_path = _save(Image.fromarray(deep), root / "deep.png")
    cmyk_path = _save(Image.new("CMYK", (6, 4), (0, 255, 255, 0)), root / "cmyk.jpg")
    la_path = _save(Image.new("LA", (6, 4), (200, 255)), root / "la.webp")
    assert Image.open(deep_path).mode.startswith("I")  # the file really is 16-bit
    assert Image.open(cmyk_path).mode == "CMYK"

    src = FolderSource(root)
    loaded = {os.path.basename(src.name(i)): src.load(i) for i in range(len(src))}
    assert len(loaded) == 6
    for name, img in loaded.items():
        assert img.mode == "RGB" and img.size == (6, 4), name
    px = {name: np.asarray(img) for name, img in loaded.items()}
    assert (px["gray.png"] == 77).all()
    assert tuple(px["rgba.png"][0, 0]) == (255, 0, 0)
    assert tuple(px["rgba.png"][0, 5]) == (255, 255, 255)  # transparent shows as white
    assert tuple(px["palette.png"][0, 0]) == (10, 200, 30)
    assert (px["deep.png"][:, :3] == 0).all() and (px["deep.png"][:, 3:] == 255).all()
    r, g, b = px["cmyk.jpg"][1, 1].astype(int)
    assert r > 200 and g < 60 and b < 60  # CMYK (0, 255, 255, 0) is red
    assert abs(int(px["la.webp"][0, 0, 0]) - 200) <= 2
    decoded = decode_images(src, 8)
    assert decoded.images.shape == (6, 3, 8, 8) and decoded.images.dtype == np.uint8


def test_unreadable_files_are_skipped_with_reasons(tmp_path):
    root = write_image_folder(tmp_path / "mixed", classes=("a", "b"), per_class=2)
    (root / "a" / "empty.png").write_bytes(b"")
    good = (root / "b" / "000.png").read_bytes()
    (root / "b" / "truncated.png").write_bytes(good[: len(good) // 2])
    (root / "a" / "notes.jpg").write_text("this is not a photo")

    src = FolderSource(root)
    assert len(src) == 7
    info = src.verify()
    assert info.images == 4 and info.classes == 2
    reasons = {os.path.basename(name): reason for name, reason in info.skipped}
    assert reasons == {"empty.png": "empty file", "truncated.png": "truncated", "notes.jpg": "not an image"}

    decoded = decode_images(src, 8)
    assert len(decoded) == 4
    assert sorted(os.path.basename(n) for n, _ in decoded.skipped) == ["empty.png", "notes.jpg", "truncated.png"]
    assert decoded.labels.tolist() == [0, 0, 1, 1]  # labels follow the images that were kept


def test_the_sample_has_1797_images_in_10_classes():
    src = SampleSource()
    assert len(src) == 1797
    assert src.class_names == [str(i) for i in range(10)]
    assert sorted(set(src.labels.tolist())) == list(range(10))
    img = src.load(0)
    assert img.mode == "RGB" and img.size == (8, 8)


def test_decoded_cache_is_reused_and_invalidated_when_a_file_changes(tmp_path, monkeypatch):
    root = write_image_folder(tmp_path / "imgs", per_class=3)
    cache = tmp_path / "cache"
    calls = []
    real_load = FolderSource.load

    def counting_load(self, index):
        calls.append(index)
        return real_load(self, index)

    monkeypatch.setattr(FolderSource, "load", counting_load)
    first = decode_images(FolderSource(root), 12, cache_dir=cache)
    assert len(calls) == 6 and first.cache_path is not None and first.cache_path.is_file()

    def no_reading(self, index):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(FolderSource, "load", no_reading)
    again = decode_images(FolderSource(root), 12, cache_dir=cache)
    assert again.cache_path == first.cache_path
    np.testing.assert_array_equal(np.asarray(again.images), np.asarray(first.images))
    assert again.labels.tolist() == first.labels.tolist() and again.names == first.names

    changed = root / "cats" / "001.png"
    Image.new("RGB", (12, 12), (1, 2, 3)).save(changed)
    st = changed.stat()
    os.utime(changed, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    monkeypatch.setattr(FolderSource, "load", counting_load)
    calls.clear()
    fresh = decode_images(FolderSource(root), 12, cache_dir=cache)
    assert len(calls) == 6  # a changed file makes a new cache
    assert fresh.cache_path != first.cache_path
    assert (np.asarray(fresh.images[1]) == np.array([1, 2, 3], np.uint8).reshape(3, 1, 1)).all()


def test_views_draw_parameters_per_sample():
    g = torch.Generator().manual_seed(0)
    one = torch.randint(0, 256, (3, 16, 16), dtype=torch.uint8, generator=g)
    batch = torch.stack([one, one, one, one])  # four copies of the same image
    torch.manual_seed(1)
    spec = simclr_view(16)
    views = make_view(batch, spec)
    assert views.shape == (4, 3, 16, 16) and views.dtype == torch.float32
    assert not torch.allclose(views[0], views[1])  # same image, different crops/jitter
    assert len({tuple(v.flatten()[:64].tolist()) for v in views}) == 4

    # Crops alone (no colour): still different per sample, and reproducible from the seed.
    crop_only = ViewSpec(size=8, jitter_p=0.0, gray_p=0.0, hflip_p=0.0)
    torch.manual_seed(2)
    a = make_view(batch, crop_only)
    torch.manual_seed(2)
    b = make_view(batch, crop_only)
    assert torch.equal(a, b)
    assert not torch.allclose(a[0], a[1])


def test_views_normalise_with_the_given_statistics():
    batch = torch.full((2, 3, 8, 8), 255, dtype=torch.uint8)
    spec = ViewSpec(size=4, jitter_p=0.0, gray_p=0.0, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    out = make_view(batch, spec)
    assert out.shape == (2, 3, 4, 4)
    assert torch.allclose(out, torch.full_like(out, 2.0))  # (1 - 0.5) / 0.25


@pytest.mark.parametrize("ext", [".bmp", ".tif", ".jpeg", ".webp"])
def test_other_extensions_are_read(tmp_path, ext):
    root = tmp_path / "x"
    root.mkdir()
    Image.new("RGB", (5, 5), (9, 99, 199)).save(root / f"a{ext}")
    src = FolderSource(root)
    assert len(src) == 1 and src.load(0).size == (5, 5)


def test_presets_crop_at_least_0_4_of_tiny_images_and_keep_the_papers_scales_from_32_px():
    from studio.engine.data.views import byol_views, dino_views, mae_view, moco_v2_view, simclr_view

    def scales(size):
        dino = dino_views(size, local_crops=2)
        return {"simclr": simclr_view(size).scale, "byol": byol_views(size)[0].scale,
                "moco": moco_v2_view(size).scale, "mae": mae_view(size).scale,
                "dino_global": dino[0].scale, "dino_local": dino[-1].scale}

    tiny, cifar = scales(16), scales(32)
    assert all(s[0] >= 0.4 for k, s in tiny.items() if k != "dino_local")
    assert tiny["dino_local"] == cifar["dino_local"] == (0.05, 0.4)  # parts stay parts
    assert cifar["simclr"] == (0.08, 1.0) and cifar["byol"] == (0.08, 1.0)
    assert cifar["moco"] == (0.2, 1.0) and cifar["mae"] == (0.2, 1.0)


def test_grey_batches_skip_saturation_and_hue_without_changing_the_view():
    import torch

    from studio.engine.data import views

    torch.manual_seed(0)
    grey = torch.randint(0, 256, (16, 1, 12, 12), dtype=torch.uint8).expand(16, 3, 12, 12).contiguous()
    spec = views.simclr_view(12)
    torch.manual_seed(1)
    fast = views.make_view(grey, spec)
    real = views._is_gray
    try:
        views._is_gray = lambda x: False  # the full HSV path
        torch.manual_seed(1)
        full = views.make_view(grey, spec)
    finally:
        views._is_gray = real
    assert torch.allclose(fast, full, atol=1e-4)
    assert views._is_gray(grey) and not views._is_gray(torch.randint(0, 256, (2, 3, 4, 4), dtype=torch.uint8))
