"""The image-text protocols of the evaluation suite (CLIP runs): zero-shot classification from
class-name prompts and image<->text retrieval on held-out captioned images. They run inside
services.evaluation.evaluate_run, which stores their results like every other protocol's."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from studio.engine.eval import EvaluationError
from studio.engine.train import TrainConfig
from studio.store import Project

RETRIEVAL_FRACTION = 0.2  # of the captioned images, held out as retrieval's queries and gallery
RETRIEVAL_MAX_IMAGES = 1000  # recall@k over more pairs says little more and costs N x M


def is_image_text(config: TrainConfig) -> bool:
    """Whether a run's method has a text tower."""
    from studio.engine.methods import method_class

    return bool(getattr(method_class(config.method), "image_text", False))


def run_model(project: Project, run_id: int, step: int, device: torch.device):
    """The whole model of a run (both towers) at checkpoint `step`, in eval mode; step 0: as the
    Trainer builds it before its first step (the run's seed)."""
    from studio.engine.train.trainer import build_method
    from studio.services.evaluation import INITIAL_STEP, checkpoint_for
    from studio.services.runs import verify_checkpoint

    run = project.run(run_id)
    if step == INITIAL_STEP:
        config = TrainConfig.from_dict(run.config)
        rng = torch.get_rng_state()
        try:
            torch.manual_seed(config.seed)
            model = build_method(config)
        finally:
            torch.set_rng_state(rng)
        return model.to(device).eval()
    state = verify_checkpoint(project, run, checkpoint_for(project, run_id, step))
    model = build_method(TrainConfig.from_dict(state["config"]))
    model.load_state_dict(state["model"])
    return model.to(device).eval()


def default_templates(project: Project, dataset_id: int) -> tuple[str, ...]:
    """The prompts zero-shot uses unless given: the dataset's own where its captions are templated."""
    from studio.engine.data.captions import DEFAULT_TEMPLATES

    ds = project.dataset(dataset_id)
    return tuple(ds.caption_templates) or DEFAULT_TEMPLATES


def _model(job):
    if job.options.get("_model") is None:
        job.options["_model"] = run_model(job.project, job.run_id, job.step, job.device)
    return job.options["_model"]


def _zeroshot(job) -> tuple[dict, dict]:
    from studio.engine.data.captions import check_templates
    from studio.engine.eval.zeroshot import zero_shot_scores

    job.report("zero-shot", 0, 1)
    templates = check_templates(job.options.get("zeroshot_templates") or default_templates(job.project, job.emb.record.dataset_id))
    idx = job.test_idx
    result = zero_shot_scores(_model(job), job.emb.images[np.sort(idx)], job.emb.labels[np.sort(idx)],
                              job.emb.class_names, templates, image_size=job.config.image_size)
    settings = {"templates": list(templates), "classes": len(job.emb.class_names), "images": "held-out",
                "chance": 1.0 / max(1, len(job.emb.class_names)), **job.split}
    return {"top1": result["top1"], "settings": settings}, {"zeroshot_top1": result["top1"]}


def _text_retrieval(job) -> tuple[dict, dict]:
    from studio.engine.eval.embed import embed_images
    from studio.engine.eval.zeroshot import ImageTower, embed_texts, image_text_recall
    from studio.services.datasets import captions_for_names

    job.report("image-text retrieval", 0, 1)
    ds = job.project.dataset(job.emb.record.dataset_id)
    captions = captions_for_names(job.project, ds, job.emb.names)
    captioned = np.flatnonzero([bool(c) for c in captions])
    if len(captioned) < 2:
        raise EvaluationError(f"the dataset {ds.name!r} has no captions to retrieve (it needs a name.txt beside each "
                              "image, a captions.csv / captions.jsonl, or class sub-folders).")
    rng = np.random.default_rng(job.seed)
    n = min(RETRIEVAL_MAX_IMAGES, max(2, int(round(RETRIEVAL_FRACTION * len(captioned)))))
    chosen = np.sort(rng.choice(captioned, size=n, replace=False))
    texts = [t for i in chosen for t in captions[i]]
    owner = np.array([j for j, i in enumerate(chosen) for _ in captions[i]], dtype=np.int64)
    model = _model(job)
    images = embed_images(ImageTower(model), job.emb.images, image_size=job.config.image_size, indices=chosen)
    scores = image_text_recall(images, embed_texts(model, texts), owner)
    settings: dict[str, Any] = {"images": int(n), "captions": len(texts), "seed": job.seed, "similarity": "cosine",
                                "held_out_fraction": RETRIEVAL_FRACTION, "templated_captions": ds.templated_captions}
    return {**scores, "settings": settings}, {"text_retrieval": scores}


TEXT_RUNNERS = {"zeroshot": _zeroshot, "text_retrieval": _text_retrieval}
