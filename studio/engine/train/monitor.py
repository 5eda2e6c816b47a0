"""Monitors the Trainer calls every epoch (or every `monitor_every` steps): kNN accuracy and
representation health, each `monitor(encoder, step) -> {name: float}`; a monitor's `looks_at`
says which encoder the Trainer hands it: "backbone" (the features a user keeps) or "output" (the
method's output where its loss is computed, `Method.output`).

* kNN top-1 (Wu et al. 2018; k and temperature from TrainConfig.knn_k / knn_temperature) of a
  held-out split against a memory bank of the other images, both through the deterministic eval
  view. Only when the images carry labels.
* Health (studio.engine.eval.health) of the method's output, as SimSiam monitors its projector's
  output z: the std of normalised outputs, effective rank, Wang & Isola's alignment (on two
  augmented views of each image) and uniformity, plus `collapse` = 1.0 when the outputs are
  collapsing (the Trainer then logs a warning, which the Run page shows). Not the backbone's
  features: a ViT's class token has a large part shared by every image (cosine 0.95 at init), so
  its spread sat at 0.075 after a SimCLR run that raised kNN top-1 from 0.63 to 0.79, under the
  collapse threshold, while the projector's output was at 0.84.

Both work on fixed, seeded subsets (at most MAX_BANK memory-bank and MAX_HELDOUT held-out /
health images) chosen once, so a check costs a few seconds whatever the dataset's size and the
curves compare like with like from one check to the next.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

from studio.engine.data.cache import DecodedImages
from studio.engine.data.views import ViewSpec, make_view
from studio.engine.eval.embed import embed_images, module_device
from studio.engine.eval.health import health_report
from studio.engine.eval.knn import knn_top1
from studio.engine.eval.linear import split_indices
from studio.engine.train.config import TrainConfig

MAX_BANK = 2048
MAX_HELDOUT = 512
HOLDOUT_FRACTION = 0.2
EMBED_BATCH = 256

Monitor = Callable[[torch.nn.Module, int], dict]


def _subsample(indices: np.ndarray, limit: int, seed: int) -> np.ndarray:
    if len(indices) <= limit:
        return indices
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(indices, size=limit, replace=False))


class KNNMonitor:
    """Weighted kNN top-1 of held-out images against a bank of the others (metric `knn_top1`)."""

    looks_at = "backbone"

    def __init__(self, images: DecodedImages, k: int = 200, temperature: float = 0.1, image_size: int | None = None,
                 seed: int = 0, max_bank: int | None = None, max_heldout: int | None = None):
        labels = np.asarray(images.labels, dtype=np.int64)
        bank, heldout = split_indices(labels, HOLDOUT_FRACTION, seed=seed)
        self.bank = _subsample(bank, max_bank or MAX_BANK, seed)
        self.heldout = _subsample(heldout, max_heldout or MAX_HELDOUT, seed + 1)
        self.images = images.images
        self.labels = labels
        self.num_classes = max(len(images.class_names), int(labels.max()) + 1)
        self.k = k
        self.temperature = temperature
        self.image_size = image_size

    def __call__(self, backbone: torch.nn.Module, step: int) -> dict:
        both = np.concatenate([self.bank, self.heldout])
        z = embed_images(backbone, self.images, EMBED_BATCH, self.image_size, indices=both)
        zb, zh = z[: len(self.bank)], z[len(self.bank):]
        top1 = knn_top1(zb, self.labels[self.bank], zh, self.labels[self.heldout], self.num_classes,
                        k=self.k, temperature=self.temperature)
        return {"knn_top1": top1}


class HealthMonitor:
    """Health of the representation on two augmented views of a fixed image subset.

    Metrics: embedding_std, embedding_std_ratio (std·√D, ~1 healthy, ~0 collapsed),
    effective_rank, alignment, uniformity, collapse (1.0 collapsing, 0.0 healthy).
    """

    looks_at = "output"

    def __init__(self, images: DecodedImages, image_size: int | None = None, seed: int = 0,
                 max_images: int | None = None):
        self.images = images.images
        self.rows = _subsample(np.arange(len(images)), max_images or MAX_HELDOUT, seed + 2)
        size = int(image_size or images.image_size)
        # Milder than the training views: alignment should measure invariance to ordinary
        # variations, and the same spec for every method keeps runs comparable.
        self.spec = ViewSpec(size=size, scale=(0.2, 1.0), brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1)
        self.seed = seed

    def _views(self, backbone: torch.nn.Module) -> tuple[np.ndarray, np.ndarray]:
        device = module_device(backbone)
        # Seeded views (the global generator is restored) so each check sees the same crops and
        # the training run's random stream is not disturbed.
        state = torch.get_rng_state()
        torch.manual_seed(self.seed)
        was_training = backbone.training
        backbone.eval()
        out1, out2 = [], []
        try:
            with torch.no_grad():
                for start in range(0, len(self.rows), EMBED_BATCH):
                    rows = self.rows[start : start + EMBED_BATCH]
                    x = torch.from_numpy(np.ascontiguousarray(self.images[rows])).to(device)
                    out1.append(backbone(make_view(x, self.spec)).flatten(1).float().cpu())
                    out2.append(backbone(make_view(x, self.spec)).flatten(1).float().cpu())
        finally:
            torch.set_rng_state(state)
            backbone.train(was_training)
        return torch.cat(out1).numpy(), torch.cat(out2).numpy()

    def __call__(self, backbone: torch.nn.Module, step: int) -> dict:
        z1, z2 = self._views(backbone)
        if not (np.isfinite(z1).all() and np.isfinite(z2).all()):
            return {"collapse": 1.0}
        report = health_report(z1, z2)
        out = {
            "embedding_std": report["std"],
            "embedding_std_ratio": report["std_ratio"],
            "effective_rank": report["effective_rank"],
            "uniformity": report["uniformity"],
            "alignment": report["alignment"],
            "collapse": 1.0 if report["collapsed"] else 0.0,
        }
        return {k: float(v) for k, v in out.items() if math.isfinite(float(v))}


def build_monitors(config: TrainConfig, images: DecodedImages, max_bank: int | None = None,
                   max_heldout: int | None = None) -> list[Monitor]:
    """The monitors for a run: health always (with >= 2 images), kNN when the images are labelled."""
    if config.monitor_every < 0 or len(images) < 2:
        return []
    monitors: list[Monitor] = []
    if images.has_labels and len(images) >= 4:
        monitors.append(KNNMonitor(images, k=config.knn_k, temperature=config.knn_temperature,
                                   image_size=config.image_size, seed=config.seed,
                                   max_bank=max_bank, max_heldout=max_heldout))
    monitors.append(HealthMonitor(images, image_size=config.image_size, seed=config.seed, max_images=max_heldout))
    return monitors
