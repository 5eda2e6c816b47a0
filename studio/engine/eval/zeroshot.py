"""Image-text evaluation of a CLIP-style model: zero-shot classification from class-name prompts
(Radford et al. 2021, section 3.1) and image<->text retrieval recall@k on held-out pairs.

The model is anything with `encode_image(x)`, `encode_text(tokens)` (both L2-normalised) and a
`tokenizer(texts)` (engine.methods.clip.CLIP).
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from studio.engine.data.captions import DEFAULT_TEMPLATES, check_templates, fill_template
from studio.engine.eval._arrays import EvaluationError
from studio.engine.eval.embed import embed_images, module_device

RECALL_AT = (1, 5, 10)


class ImageTower(torch.nn.Module):
    """The model's normalised image embedding, as an encoder for `embed_images`."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(x)


def embed_texts(model, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
    """(len(texts), D) float32 normalised text embeddings."""
    device = module_device(model)
    was_training = model.training
    model.eval()
    out = []
    try:
        with torch.no_grad():
            for start in range(0, len(texts), batch_size):
                tokens = model.tokenizer(list(texts[start:start + batch_size])).to(device)
                out.append(model.encode_text(tokens).float().cpu().numpy())
    finally:
        model.train(was_training)
    return np.concatenate(out).astype(np.float32, copy=False) if out else np.zeros((0, 0), np.float32)


def class_embeddings(model, class_names: Sequence[str], templates: Sequence[str] = DEFAULT_TEMPLATES) -> np.ndarray:
    """(C, D): each class's prompts embedded and averaged, then normalised again (CLIP's prompt
    ensembling, section 3.1.4)."""
    templates = check_templates(templates)
    texts = [fill_template(t, c) for c in class_names for t in templates]
    z = embed_texts(model, texts).reshape(len(class_names), len(templates), -1).mean(axis=1)
    return z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)


def zero_shot_predict(image_features: np.ndarray, class_features: np.ndarray) -> np.ndarray:
    """Each image's class: the prompt embedding nearest by cosine similarity."""
    return np.argmax(image_features @ class_features.T, axis=1)


def zero_shot_top1(image_features: np.ndarray, labels: np.ndarray, class_features: np.ndarray) -> float:
    labels = np.asarray(labels)
    if (labels < 0).any():
        raise EvaluationError("zero-shot classification needs a label for every image.")
    return float((zero_shot_predict(image_features, class_features) == labels).mean())


def recall_at(similarity: np.ndarray, relevant: Callable[[np.ndarray], np.ndarray], ks=RECALL_AT) -> dict[int, float]:
    """Share of queries (rows) with a relevant item among their k most similar (columns);
    `relevant(order)` marks, for each query's ranking (Q, M), which ranked items are its own."""
    order = np.argsort(-similarity, axis=1, kind="stable")
    hit = relevant(order)
    first = np.where(hit.any(axis=1), hit.argmax(axis=1), similarity.shape[1])
    return {k: float((first < k).mean()) for k in ks}


def image_text_recall(image_features: np.ndarray, text_features: np.ndarray, text_image: np.ndarray,
                      ks=RECALL_AT) -> dict[str, float]:
    """Retrieval between N images and M captions, `text_image[j]` the image caption j belongs to:
    image->text recall@k (one of the image's own captions among its k nearest captions) and
    text->image recall@k (the caption's image among its k nearest images), as in the CLIP paper's
    Flickr30k / MSCOCO table."""
    text_image = np.asarray(text_image, dtype=np.int64)
    sim = image_features @ text_features.T  # (N, M)
    rows = np.arange(len(image_features))[:, None]
    i2t = recall_at(sim, lambda order: text_image[order] == rows, ks)
    t2i = recall_at(sim.T, lambda order: order == text_image[:, None], ks)
    out = {f"image_to_text_recall@{k}": v for k, v in i2t.items()}
    out.update({f"text_to_image_recall@{k}": v for k, v in t2i.items()})
    return out


def zero_shot_scores(model, images, labels: np.ndarray, class_names: Sequence[str],
                     templates: Sequence[str] = DEFAULT_TEMPLATES, image_size: int | None = None,
                     batch_size: int = 256) -> dict:
    """{"top1", "predictions"} of zero-shot classification of uint8 `images` over `class_names`."""
    features = embed_images(ImageTower(model), images, batch_size=batch_size, image_size=image_size)
    classes = class_embeddings(model, class_names, templates)
    preds = zero_shot_predict(features, classes)
    return {"top1": zero_shot_top1(features, labels, classes), "predictions": preds}
