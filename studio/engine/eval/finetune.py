"""Fine-tuning: the whole encoder plus a linear head trained on labels for a few epochs.

The end-to-end protocol SSL papers report next to the linear probe (SimCLR §B.5, MAE §4): start
from the pretrained encoder, add a linear classifier, train everything with cross-entropy, and
report top-1 on held-out images. The same call with a freshly built encoder gives the
random-initialisation baseline the pretraining has to beat.

Light augmentation (random resized crop 0.5-1 and flip, no colour) keeps a few epochs on a small
labelled set from memorising it; the held-out images go through the deterministic eval view.
"""

from __future__ import annotations

import copy
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from studio.engine.data.views import ViewSpec, eval_view, make_view
from studio.engine.eval._arrays import EvaluationError
from studio.engine.eval.embed import EmbeddingCancelled, module_device

Progress = Callable[[int, int], None]


def _feature_dim(encoder: nn.Module, images, image_size: int, device) -> int:
    dim = getattr(encoder, "feature_dim", None)
    if dim:
        return int(dim)
    with torch.no_grad():
        x = eval_view(torch.from_numpy(np.ascontiguousarray(images[:2])).to(device), image_size)
        return int(encoder(x).flatten(1).shape[1])


def finetune(
    encoder: nn.Module,
    images,
    labels,
    train_idx,
    test_idx,
    num_classes: int,
    epochs: int = 3,
    batch_size: int = 64,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    image_size: int | None = None,
    device: torch.device | str | None = None,
    seed: int = 0,
    progress: Progress | None = None,
    cancelled: Callable[[], bool] | None = None,
    copy_encoder: bool = True,
    steps: int | None = None,
) -> dict:
    """Fine-tune `encoder` + a linear head on images[train_idx], report top-1 on images[test_idx].

    images: uint8 (N, 3, S, S); labels: (N,) ints in [0, num_classes). The encoder is deep-copied
    first (copy_encoder) so the caller's model, e.g. a loaded checkpoint, is left as it was.
    AdamW with a cosine schedule over all steps. `steps`, when given, is the exact number of
    optimiser steps (the epochs then follow from it), so label sets of different sizes can get the
    same budget. Returns {"top1", "train_top1", "final_loss",
    "epochs", "steps", "num_train", "num_test"}.
    """
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long).reshape(-1)
    train_idx = np.asarray(train_idx, dtype=np.int64)
    test_idx = np.asarray(test_idx, dtype=np.int64)
    if len(train_idx) < 2 or len(test_idx) < 1:
        raise EvaluationError("fine-tuning needs at least 2 training and 1 held-out labelled images.")
    if num_classes < 2:
        raise EvaluationError("fine-tuning needs at least 2 classes.")
    if epochs < 1 or (steps is not None and steps < 1):
        raise EvaluationError(f"epochs and steps must be at least 1; got {epochs} and {steps}.")
    if int(y[train_idx].min()) < 0 or int(y.max()) >= num_classes:
        raise EvaluationError("fine-tuning needs every image labelled with a class in range.")
    device = torch.device(device) if device is not None else module_device(encoder)
    size = int(image_size or images.shape[-1])
    model = copy.deepcopy(encoder) if copy_encoder else encoder
    model = model.to(device)
    head = nn.Linear(_feature_dim(model, images, size, device), num_classes).to(device)
    params = list(model.parameters()) + list(head.parameters())
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    batch = max(2, min(batch_size, len(train_idx)))
    steps_per_epoch = max(1, len(train_idx) // batch)
    if steps is not None:
        epochs = -(-int(steps) // steps_per_epoch)
    total = int(steps) if steps is not None else epochs * steps_per_epoch
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    spec = ViewSpec(size=size, scale=(0.5, 1.0), jitter_p=0.0, gray_p=0.0)
    gen = torch.Generator().manual_seed(seed)
    # make_view draws from torch's global generator; keep the caller's stream untouched.
    rng_state = torch.get_rng_state()
    torch.manual_seed(seed)
    step, loss_value = 0, float("nan")
    try:
        model.train()
        head.train()
        for _epoch in range(epochs):
            perm = train_idx[torch.randperm(len(train_idx), generator=gen).numpy()]
            for s in range(steps_per_epoch):
                if step >= total:
                    break
                if cancelled is not None and cancelled():
                    raise EmbeddingCancelled("fine-tuning was cancelled")
                rows = np.sort(perm[s * batch : (s + 1) * batch])
                x = torch.from_numpy(np.ascontiguousarray(images[rows])).to(device)
                logits = head(model(make_view(x, spec)).flatten(1))
                loss = F.cross_entropy(logits, y[rows].to(device))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                step += 1
                if progress is not None:
                    progress(step, total)
            loss_value = float(loss.detach())
        if not np.isfinite(loss_value):
            raise EvaluationError("fine-tuning diverged (the loss is not finite); try a lower learning rate.")
        top1 = _accuracy(model, head, images, y, test_idx, size, device, batch_size)
        train_top1 = _accuracy(model, head, images, y, train_idx, size, device, batch_size)
    finally:
        torch.set_rng_state(rng_state)
    return {
        "top1": top1,
        "train_top1": train_top1,
        "final_loss": loss_value,
        "epochs": int(epochs),
        "steps": int(step),
        "num_train": int(len(train_idx)),
        "num_test": int(len(test_idx)),
    }


def _accuracy(model, head, images, y, idx, size, device, batch_size) -> float:
    model.eval()
    head.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(idx), max(1, batch_size)):
            rows = idx[start : start + batch_size]
            x = eval_view(torch.from_numpy(np.ascontiguousarray(images[rows])).to(device), size)
            pred = head(model(x).flatten(1)).argmax(1).cpu()
            correct += int((pred == y[rows]).sum())
    model.train()
    head.train()
    return correct / max(1, len(idx))


# The label fractions of the semi-supervised tables of SimCLR (Chen et al. 2020, §6, Table 7) and
# BYOL (Grill et al. 2020, Table 2): 1 % and 10 % of ImageNet's labels, and all of them.
LABEL_FRACTIONS = (0.01, 0.1, 1.0)


def label_subset(labels, train_idx, fraction: float, seed: int = 0) -> np.ndarray:
    """A class-balanced `fraction` of `train_idx` (sorted): round(fraction · n_c) of each class c,
    at least one, so even 1 % of a small set still shows the classifier every class."""
    if not 0.0 < fraction <= 1.0:
        raise EvaluationError(f"a label fraction must lie in (0, 1]; got {fraction}.")
    train_idx = np.asarray(train_idx, dtype=np.int64)
    if fraction == 1.0:
        return np.sort(train_idx)
    y = np.asarray(labels).reshape(-1)[train_idx]
    rng = np.random.default_rng([seed, int(round(fraction * 1e6))])
    picked = []
    for c in np.unique(y):
        rows = train_idx[y == c]
        picked.append(rng.choice(rows, size=max(1, int(round(fraction * len(rows)))), replace=False))
    return np.sort(np.concatenate(picked))


def fraction_name(fraction: float) -> str:
    """0.01 -> "1%", 0.1 -> "10%", 1.0 -> "100%" (the keys results are stored under)."""
    return f"{fraction * 100:g}%"


def label_efficiency(
    pretrained: nn.Module,
    scratch: Callable[[], nn.Module],
    images,
    labels,
    train_idx,
    test_idx,
    num_classes: int,
    fractions=LABEL_FRACTIONS,
    steps: int = 100,
    batch_size: int = 64,
    lr: float = 1e-3,
    image_size: int | None = None,
    device: torch.device | str | None = None,
    seed: int = 0,
    progress: Callable[[str, int, int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> dict:
    """Label-efficient fine-tuning (SimCLR §6, BYOL §4.2): for each label fraction, fine-tune the
    pretrained encoder and the same architecture from scratch (`scratch()` builds a fresh one) on
    the same class-balanced subset with the same step budget, both scored on all of `test_idx`.

    Returns {"1%": {"pretrained": top1, "scratch": top1, "num_labels": n}, ...}.
    `progress(stage, done, total)` names the fraction and the encoder being trained.
    """
    out = {}
    for fraction in fractions:
        rows = label_subset(labels, train_idx, fraction, seed)
        name = fraction_name(fraction)
        result = {"num_labels": int(len(rows))}
        for which, build in (("pretrained", lambda: pretrained), ("scratch", scratch)):
            report = None
            if progress is not None:
                def report(done, total, stage=f"fine-tune {which}, {name} of the labels"):
                    progress(stage, done, total)
            trained = finetune(build(), images, labels, rows, test_idx, num_classes, steps=steps, batch_size=batch_size,
                               lr=lr, image_size=image_size, device=device, seed=seed, progress=report,
                               cancelled=cancelled, copy_encoder=True)
            result[which] = trained["top1"]
        out[name] = result
    return out
