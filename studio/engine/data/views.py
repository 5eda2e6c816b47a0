"""Views (augmentations) made on batches of uint8 images on the training device.

Each sample of a batch draws its own random parameters, as the per-image pipelines of the papers
and of lightly do (torchvision's v2 transforms draw one set per call, so a batch through them
would be cropped and jittered all alike). Parameters are drawn on the CPU from torch's global
generator, which the Trainer checkpoints, so a resumed run makes the very same views.

One deliberate difference from the per-image pipeline: colour jitter applies brightness,
contrast, saturation and hue in one random order per batch rather than per image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_GRAY = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class ViewSpec:
    """One view's augmentation, with the parameters of torchvision's transforms of the same name."""

    size: int
    scale: tuple[float, float] = (0.08, 1.0)  # RandomResizedCrop area fraction
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip_p: float = 0.5
    jitter_p: float = 0.8  # ColorJitter applied with this probability
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.2
    hue: float = 0.1
    gray_p: float = 0.2
    blur_p: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    blur_kernel_fraction: float = 0.1  # kernel side as a fraction of the view size (SimCLR: 10 %)
    solarize_p: float = 0.0
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD


def _uniform(n: int, lo: float, hi: float, generator: torch.Generator | None = None) -> torch.Tensor:
    return torch.rand(n, generator=generator) * (hi - lo) + lo


def _coin(n: int, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    return torch.rand(n, generator=generator) < p


def random_resized_crop_boxes(n: int, height: int, width: int, scale, ratio, tries: int = 10,
                              generator: torch.Generator | None = None) -> torch.Tensor:
    """(n, 4) boxes (left, top, width, height) in pixels, drawn as torchvision's RandomResizedCrop:
    up to `tries` candidates per sample, the first that fits, else a centre crop of clamped ratio."""
    area = float(height * width)
    target = area * _uniform(n * tries, scale[0], scale[1], generator).view(n, tries)
    log_r = _uniform(n * tries, math.log(ratio[0]), math.log(ratio[1]), generator).view(n, tries)
    aspect = torch.exp(log_r)
    w = torch.round(torch.sqrt(target * aspect))
    h = torch.round(torch.sqrt(target / aspect))
    fits = (w > 0) & (h > 0) & (w <= width) & (h <= height)
    first = torch.where(fits.any(1), fits.float().argmax(1), torch.full((n,), -1))
    rows = torch.arange(n)
    w_sel = w[rows, first.clamp(min=0)]
    h_sel = h[rows, first.clamp(min=0)]
    # Fallback as torchvision: the whole image cropped to the nearest allowed ratio.
    in_ratio = width / height
    if in_ratio < min(ratio):
        fw, fh = width, round(width / min(ratio))
    elif in_ratio > max(ratio):
        fh, fw = height, round(height * max(ratio))
    else:
        fw, fh = width, height
    ok = first >= 0
    w_sel = torch.where(ok, w_sel, torch.full_like(w_sel, fw))
    h_sel = torch.where(ok, h_sel, torch.full_like(h_sel, fh))
    left = torch.floor(torch.rand(n, generator=generator) * (width - w_sel + 1))
    top = torch.floor(torch.rand(n, generator=generator) * (height - h_sel + 1))
    left = torch.where(ok, left, torch.full_like(left, (width - fw) // 2))
    top = torch.where(ok, top, torch.full_like(top, (height - fh) // 2))
    return torch.stack([left, top, w_sel, h_sel], dim=1)


def crop_resize_flip(x: torch.Tensor, boxes: torch.Tensor, flip: torch.Tensor, size: int) -> torch.Tensor:
    """Crop each image to its box, resize to size x size (bilinear) and mirror where `flip`.

    One affine `grid_sample` does all three for the whole batch.
    """
    n, _, height, width = x.shape
    boxes = boxes.to(device=x.device, dtype=torch.float32)
    left, top, bw, bh = boxes.unbind(1)
    sx = bw / width
    sy = bh / height
    tx = (left + bw / 2) / width * 2 - 1
    ty = (top + bh / 2) / height * 2 - 1
    sign = torch.where(flip.to(x.device), -1.0, 1.0)
    theta = torch.zeros(n, 2, 3, device=x.device)
    theta[:, 0, 0] = sx * sign
    theta[:, 0, 2] = tx
    theta[:, 1, 1] = sy
    theta[:, 1, 2] = ty
    grid = F.affine_grid(theta, [n, x.shape[1], size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def grayscale(x: torch.Tensor) -> torch.Tensor:
    w = torch.tensor(_GRAY, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    r, g, b = x.unbind(1)
    maxc, _ = x.max(1)
    minc, _ = x.min(1)
    eqc = maxc == minc
    cr = maxc - minc
    ones = torch.ones_like(maxc)
    s = cr / torch.where(eqc, ones, maxc)
    div = torch.where(eqc, ones, cr)
    rc, gc, bc = (maxc - r) / div, (maxc - g) / div, (maxc - b) / div
    hr = (maxc == r) * (bc - gc)
    hg = ((maxc == g) & (maxc != r)) * (2.0 + rc - bc)
    hb = ((maxc != g) & (maxc != r)) * (4.0 + gc - rc)
    h = torch.fmod((hr + hg + hb) / 6.0 + 1.0, 1.0)
    return torch.stack([h, s, maxc], 1)


def hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    h, s, v = x.unbind(1)
    i = torch.floor(h * 6.0)
    f = h * 6.0 - i
    i = i.to(torch.int64) % 6
    p = (v * (1.0 - s)).clamp(0, 1)
    q = (v * (1.0 - s * f)).clamp(0, 1)
    t = (v * (1.0 - s * (1.0 - f))).clamp(0, 1)
    sel = F.one_hot(i, 6).permute(0, 3, 1, 2).to(x.dtype)  # (N, 6, H, W)
    r = (torch.stack([v, q, p, p, t, v], 1) * sel).sum(1)
    g = (torch.stack([t, v, v, q, p, p], 1) * sel).sum(1)
    b = (torch.stack([p, p, t, v, v, q], 1) * sel).sum(1)
    return torch.stack([r, g, b], 1)


def color_jitter(x: torch.Tensor, brightness, contrast, saturation, hue, order=None) -> torch.Tensor:
    """Per-sample factors, each a (N,) tensor; 1 (0 for hue) leaves a sample unchanged."""
    view = lambda t: t.to(x.device, x.dtype).view(-1, 1, 1, 1)  # noqa: E731
    for op in order if order is not None else range(4):
        if op == 0:
            x = (x * view(brightness)).clamp(0, 1)
        elif op == 1:
            mean = grayscale(x).mean(dim=(1, 2, 3), keepdim=True)
            c = view(contrast)
            x = (c * x + (1 - c) * mean).clamp(0, 1)
        elif op == 2:
            s = view(saturation)
            x = (s * x + (1 - s) * grayscale(x)).clamp(0, 1)
        elif op == 3 and bool((hue != 0).any()):
            hsv = rgb_to_hsv(x)
            hsv[:, 0] = torch.remainder(hsv[:, 0] + hue.to(x.device, x.dtype).view(-1, 1, 1), 1.0)
            x = hsv_to_rgb(hsv)
    return x


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Separable Gaussian blur with one sigma per sample, reflect-padded as torchvision's."""
    n, c, h, w = x.shape
    half = kernel_size // 2
    coords = torch.arange(kernel_size, device=x.device, dtype=x.dtype) - half
    sigma = sigma.to(x.device, x.dtype).view(-1, 1)
    k = torch.exp(-(coords.view(1, -1) ** 2) / (2 * sigma**2))
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(c, 0)  # (n*c, K)
    y = x.reshape(1, n * c, h, w)
    y = F.pad(y, (half, half, half, half), mode="reflect")
    y = F.conv2d(y, k.view(n * c, 1, 1, kernel_size), groups=n * c)
    y = F.conv2d(y, k.view(n * c, 1, kernel_size, 1), groups=n * c)
    return y.view(n, c, h, w)


def blur_kernel_size(size: int, fraction: float) -> int:
    k = max(3, int(round(size * fraction)))
    return k if k % 2 else k + 1


def _is_gray(x: torch.Tensor) -> bool:
    """Whether every pixel of the batch is grey (R = G = B), as the built-in digits are."""
    return bool(((x[:, 0] == x[:, 1]) & (x[:, 1] == x[:, 2])).all())


def make_view(images: torch.Tensor, spec: ViewSpec, generator: torch.Generator | None = None) -> torch.Tensor:
    """uint8 (N, 3, H, W) on any device -> normalised float32 (N, 3, S, S), one view per sample.

    The parameters come from `generator` (a CPU one), or torch's global generator as the Trainer
    draws them; a preview made beside a training run draws from its own, leaving the run's stream
    alone."""
    gen = generator
    n, _, height, width = images.shape
    x = images.float().div_(255.0)
    boxes = random_resized_crop_boxes(n, height, width, spec.scale, spec.ratio, generator=gen)
    flip = _coin(n, spec.hflip_p, gen)
    x = crop_resize_flip(x, boxes, flip, spec.size)

    if spec.jitter_p > 0:
        on = _coin(n, spec.jitter_p, gen)
        one, zero = torch.ones(n), torch.zeros(n)
        b = torch.where(on, _uniform(n, max(0.0, 1 - spec.brightness), 1 + spec.brightness, gen), one)
        c = torch.where(on, _uniform(n, max(0.0, 1 - spec.contrast), 1 + spec.contrast, gen), one)
        s = torch.where(on, _uniform(n, max(0.0, 1 - spec.saturation), 1 + spec.saturation, gen), one)
        hh = torch.where(on, _uniform(n, -spec.hue, spec.hue, gen), zero)
        order = torch.randperm(4, generator=gen).tolist()
        if x.device.type == "cpu" and _is_gray(x):
            # Saturation and hue leave grey pixels as they are; skipping them (the HSV round trip
            # is most of the jitter's time) changes nothing but the speed on greyscale data. Only
            # on the CPU: elsewhere the check would wait for the device at every step.
            s, hh = one, zero
        x = color_jitter(x, b, c, s, hh, order=order)
    if spec.gray_p > 0:
        g = _coin(n, spec.gray_p, gen).to(x.device).view(-1, 1, 1, 1)
        x = torch.where(g, grayscale(x).expand_as(x), x)
    if spec.blur_p > 0:
        idx = torch.nonzero(_coin(n, spec.blur_p, gen)).flatten()
        sigma = _uniform(len(idx), *spec.blur_sigma, gen)
        if len(idx):
            idx_d = idx.to(x.device)
            x = x.index_copy(0, idx_d, gaussian_blur(x.index_select(0, idx_d), sigma, blur_kernel_size(spec.size, spec.blur_kernel_fraction)))
    if spec.solarize_p > 0:
        sol = _coin(n, spec.solarize_p, gen).to(x.device).view(-1, 1, 1, 1)
        x = torch.where(sol & (x >= 0.5), 1.0 - x, x)
    mean = torch.tensor(spec.mean, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(spec.std, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def eval_view(images: torch.Tensor, size: int | None = None, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    """The deterministic view for embedding and evaluation: resize only, normalised."""
    x = images.float().div(255.0)
    if size is not None and x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    m = torch.tensor(mean, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=x.device).view(1, 3, 1, 1)
    return (x - m) / s


# -- presets of the papers, scaled to the image size ------------------------------------------
SMALL_IMAGE = 64  # under this, Gaussian blur is dropped, as in the papers' CIFAR settings
# Under CIFAR's 32 px no paper gives a setting, and a crop of 8 % of a 16 px image is a 4 px
# fleck that shows no part of anything: both views of a pair then share nothing to agree on.
# There every view is a global crop, DINO's 0.4-1 of the area: on the built-in digits at 16 px,
# it took a 30-step SimCLR run's kNN top-1 lead over its random init from +0.01-0.03 to +0.11-0.13.
TINY_IMAGE = 32
TINY_MIN_SCALE = 0.4


def crop_scale(size: int, scale: tuple[float, float]) -> tuple[float, float]:
    """A preset's crop area range at `size`: the paper's, but at least TINY_MIN_SCALE under TINY_IMAGE px."""
    if size >= TINY_IMAGE:
        return scale
    return (max(scale[0], TINY_MIN_SCALE), max(scale[1], TINY_MIN_SCALE))


def simclr_view(size: int, strength: float = 1.0) -> ViewSpec:
    """SimCLR (Chen et al. 2020, appendix A): crop 0.08-1, flip, jitter 0.8*s (p .8), gray p .2,
    blur p .5 with sigma 0.1-2 at ImageNet sizes. (Every preset crops 0.4-1 under TINY_IMAGE px.)"""
    return ViewSpec(
        size=size,
        scale=crop_scale(size, (0.08, 1.0)),
        brightness=0.8 * strength,
        contrast=0.8 * strength,
        saturation=0.8 * strength,
        hue=0.2 * strength,
        blur_p=0.5 if size >= SMALL_IMAGE else 0.0,
    )


def byol_views(size: int) -> tuple[ViewSpec, ViewSpec]:
    """BYOL (Grill et al. 2020, table 6): two asymmetric views; blur p 1.0/0.1, solarise 0/0.2."""
    base = ViewSpec(size=size, scale=crop_scale(size, (0.08, 1.0)), brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1)
    big = size >= SMALL_IMAGE
    return (
        replace(base, blur_p=1.0 if big else 0.0, solarize_p=0.0),
        replace(base, blur_p=0.1 if big else 0.0, solarize_p=0.2),
    )


def moco_v2_view(size: int) -> ViewSpec:
    """MoCo v2 (Chen, Fan, Girshick, He 2020, "Improved Baselines..."; also SimSiam's): crop
    0.2-1, flip, jitter (0.4, 0.4, 0.4, 0.1) p .8, gray p .2, blur p .5 with sigma 0.1-2."""
    return ViewSpec(size=size, scale=crop_scale(size, (0.2, 1.0)), brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1,
                    blur_p=0.5 if size >= SMALL_IMAGE else 0.0)


def local_crop_size(size: int, multiple_of: int = 4) -> int:
    """DINO's local crop side, 96/224 of the global one, rounded to a multiple of `multiple_of`
    (a ViT's patch size, so the crop tiles into whole patches)."""
    m = max(1, multiple_of)
    smallest = m * -(-8 // m)  # the least multiple of m that is at least 8 px
    return max(smallest, int(round(size * 96 / 224 / m)) * m)


def dino_views(size: int, local_crops: int = 6, local_size: int | None = None,
               global_scale=(0.4, 1.0), local_scale=(0.05, 0.4)) -> list[ViewSpec]:
    """DINO (Caron et al. 2021, appendix): two global crops with BYOL's asymmetric blur (1.0/0.1)
    and solarisation (0/0.2), and `local_crops` small crops (96/224 of the global size, blur p .5)."""
    g1, g2 = byol_views(size)
    local_size = local_size or local_crop_size(size)
    big = size >= SMALL_IMAGE
    local = ViewSpec(size=local_size, scale=local_scale, brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1,
                     blur_p=0.5 if big else 0.0)
    global_scale = crop_scale(size, global_scale)  # local crops stay small: being parts is their point
    return [replace(g1, scale=global_scale), replace(g2, scale=global_scale)] + [local] * local_crops


def mae_view(size: int) -> ViewSpec:
    """MAE (He et al. 2022): random resized crop 0.2-1 and flip only."""
    return ViewSpec(size=size, scale=crop_scale(size, (0.2, 1.0)), jitter_p=0.0, gray_p=0.0)
