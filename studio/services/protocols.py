"""The evaluation suite's table: each protocol once, with what the dialog's checkbox, the CLI's
task word, Run details' tooltip and the Evaluation view's columns say about it (DESIGN rule 8),
and a run's headline numbers under those columns. The protocols themselves run in
services.evaluation."""

from __future__ import annotations

from dataclasses import dataclass

from studio.engine.eval import EvaluationError
from studio.store import Project


@dataclass(frozen=True)
class Column:
    """One number of a protocol in the summary (Compare, the Evaluation view): its key, title and
    whether more is better."""

    key: str
    title: str
    higher_is_better: bool = True


@dataclass(frozen=True)
class Protocol:
    """One evaluation protocol: what the dialog's checkbox, the CLI's task word, Run details'
    tooltip and the Evaluation view's columns all say about it (DESIGN rule 8: said once, here)."""

    key: str  # the CLI's task word and the kind of the stored evaluation
    label: str
    about: str  # what it measures, how, and after which paper
    cost: str
    default: bool = False
    needs_labels: bool = True
    columns: tuple[Column, ...] = ()
    needs_text: bool = False  # an image-text protocol: for runs with a text tower (CLIP) only

    @property
    def tooltip(self) -> str:
        return f"{self.about} Takes {self.cost}."


PROTOCOLS: tuple[Protocol, ...] = (
    Protocol("knn", "kNN top-1",
             "Weighted k-nearest-neighbour vote on frozen features (Wu et al. 2018): cosine similarity, each "
             "neighbour weighted exp(s/0.1), top-1 on the held-out images for k = 10, 20 and 200 (capped by the "
             "training images); top1 is at the run's own k.",
             "seconds: the embeddings and a vote of their nearest neighbours", default=True,
             columns=(Column("knn_top1", "kNN top-1"),)),
    Protocol("linear", "Linear probe",
             "Logistic regression on frozen, standardised features (Zhang et al. 2016; SimCLR's linear "
             "evaluation), top-1 on the held-out images.",
             "seconds to a minute: a logistic regression on frozen features", default=True,
             columns=(Column("linear_top1", "Linear top-1"),)),
    Protocol("fewshot", "Few-shot (1, 5, 10 per class)",
             "The linear probe fitted on only 1, 5 or 10 labelled images per class (Goyal et al. 2019; MSN, "
             "Assran et al. 2022), scored on all held-out images: mean and spread over 5 random draws.",
             "seconds: fifteen small logistic regressions",
             columns=(Column("fewshot_1", "1-shot"), Column("fewshot_5", "5-shot"), Column("fewshot_10", "10-shot"))),
    Protocol("finetune", "Fine-tune with 1%, 10%, 100% of labels vs from scratch",
             "Label-efficient fine-tuning (SimCLR §6, BYOL §4.2): the whole encoder and a linear head trained "
             "on 1 %, 10 % and 100 % of the training labels (class-balanced), against the same backbone from "
             "its random initialisation on the same labels and steps; top-1 on the held-out images.",
             "minutes: trains the encoder and a fresh one on each share of the labels",
             columns=(Column("finetune_1%", "Fine-tune 1%"), Column("finetune_10%", "Fine-tune 10%"),
                      Column("finetune_top1", "Fine-tune top-1"), Column("finetune_random_top1", "From scratch"))),
    Protocol("retrieval", "Retrieval (recall@k, mAP)",
             "Each held-out image queries the training images by cosine similarity; an image of its class is a "
             "hit. recall@k: share of queries with a hit in their k nearest (Song et al. 2016); map: mean "
             "average precision over the whole ranking (DINO's retrieval table).",
             "seconds: one similarity ranking per held-out image",
             columns=(Column("retrieval_recall@1", "Recall@1"), Column("retrieval_map", "Retrieval mAP"))),
    Protocol("clustering", "Clustering (k-means NMI, ARI)",
             "Spherical k-means with one cluster per class on all the features, compared with the labels: "
             "normalised mutual information (DeepCluster, Caron et al. 2018) and adjusted Rand index "
             "(Hubert & Arabie 1985); 1 is a perfect match, 0 chance.",
             "seconds: one k-means",
             columns=(Column("clustering_nmi", "NMI"), Column("clustering_ari", "ARI"))),
    Protocol("rank", "Diagnostics without labels (rank, alignment, uniformity)",
             "No labels needed. effective_rank: RankMe (Garrido et al. 2023), exp of the entropy of the "
             "normalised singular values of the features; higher is richer. alignment: mean squared distance "
             "of two augmented views of an image, uniformity: log E exp(-2|x-y|^2) over pairs of normalised "
             "features (Wang & Isola 2020); lower is better for both.",
             "seconds: the embeddings and two augmented views of a few hundred images", needs_labels=False,
             columns=(Column("effective_rank", "Effective rank"), Column("alignment", "Alignment", False),
                      Column("uniformity", "Uniformity", False))),
    Protocol("zeroshot", "Zero-shot classification (image-text runs)",
             "No classifier is trained: each class becomes sentences from prompt templates ('a photo of a {class}.', "
             "editable), the text tower embeds them, and each held-out image takes the class whose averaged prompt "
             "embedding is nearest (CLIP, Radford et al. 2021, section 3.1); top-1 on the held-out images.",
             "seconds: the images and a few sentences per class", needs_text=True,
             columns=(Column("zeroshot_top1", "Zero-shot top-1"),)),
    Protocol("text_retrieval", "Image-text retrieval (recall@1, 5, 10; image-text runs)",
             "The held-out images and their captions: each image queries the captions (image to text; a hit is one "
             "of its own) and each caption queries the images (text to image; a hit is its image), by cosine "
             "similarity in the shared space; recall@k is the share of queries with a hit among their k nearest "
             "(CLIP's Flickr30k / MSCOCO table). Templated captions repeat within a class, so they cap it.",
             "seconds: one similarity ranking each way", needs_labels=False, needs_text=True,
             columns=(Column("text_retrieval_image_to_text_recall@1", "Image to text R@1"),
                      Column("text_retrieval_text_to_image_recall@1", "Text to image R@1"))),
)
BASELINE = Protocol("baseline", "Compare with the untrained encoder",
                    "The same kNN and linear-probe numbers for the run's encoder at its random initialisation "
                    "(step 0), so the pretraining's gain can be read off.",
                    "as long again as kNN and the linear probe",
                    columns=(Column("knn_random_top1", "kNN untrained"), Column("linear_random_top1", "Linear untrained")))
PROTOCOL_KEYS = tuple(p.key for p in PROTOCOLS)


def protocol(kind: str) -> Protocol | None:
    """The protocol (or the baseline option) an evaluation of this kind was made by."""
    return next((p for p in (*PROTOCOLS, BASELINE) if p.key == kind), None)


def resolve_protocols(names, image_text: bool | None = None) -> tuple[str, ...]:
    """Task words (any order, comma-separated or not, "all" for every one) as protocol keys in the
    table's order. `image_text` False (a run without a text tower): "all" leaves the image-text
    protocols out, and naming one is an error; None: the run is not known yet (any may be named)."""
    if isinstance(names, str):
        names = [names]
    wanted = {w.strip().lower() for n in names for w in str(n).split(",") if w.strip()}
    if "all" in wanted:
        return tuple(p.key for p in PROTOCOLS if image_text is not False or not p.needs_text)
    textual = sorted(k for k in wanted if (p := protocol(k)) is not None and p.needs_text)
    if textual and image_text is False:
        raise EvaluationError(f"{', '.join(textual)} need{'s' if len(textual) == 1 else ''} an image-text run, with a text "
                              "tower (--method clip); this run trained images alone.")
    unknown = sorted(wanted - set(PROTOCOL_KEYS))
    if unknown:
        raise EvaluationError(f"unknown evaluation task {', '.join(unknown)}; choose from {', '.join(PROTOCOL_KEYS)} or all.")
    if not wanted:
        raise EvaluationError(f"choose at least one evaluation task: {', '.join(PROTOCOL_KEYS)} or all.")
    return tuple(k for k in PROTOCOL_KEYS if k in wanted)


def labels_missing(protocols, baseline: bool, has_labels: bool, dataset: str = "this dataset") -> str:
    """Why these protocols cannot run on a dataset without labels ("" when they can)."""
    labelled = [k for k in protocols if protocol(k).needs_labels] + (["baseline"] if baseline else [])
    if not labelled or has_labels:
        return ""
    return (f"the dataset {dataset!r} has no labels; {', '.join(labelled)} need a labelled dataset "
            "(a folder with one sub-folder per class). The diagnostics (rank) work without labels.")


def _flat_numbers(metrics: dict) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def summarize(kind: str, metrics: dict) -> dict[str, float]:
    """An evaluation's headline numbers under the summary keys of its protocol's columns."""
    m = _flat_numbers(metrics or {})
    if kind in ("knn", "linear") and "top1" in m:
        return {f"{kind}_top1": m["top1"]}
    if kind == "finetune":
        out = {"finetune_top1": m.get("top1"), "finetune_random_top1": m.get("random_init_top1")}
        out.update({f"finetune_{k.split()[0]}": v for k, v in m.items() if k.endswith(" pretrained")})
        return {k: v for k, v in out.items() if v is not None}
    if kind == "fewshot":
        return {f"fewshot_{k.split('-')[0]}": v for k, v in m.items() if k.endswith("-shot")}
    if kind in ("retrieval", "clustering"):
        return {f"{kind}_{k}": v for k, v in m.items()}
    if kind == "rank":
        return {k: v for k, v in m.items() if k in ("effective_rank", "alignment", "uniformity")}
    if kind == "zeroshot" and "top1" in m:
        return {"zeroshot_top1": m["top1"]}
    if kind == "text_retrieval":
        return {f"{kind}_{k}": v for k, v in m.items()}
    if kind == "baseline":
        return m
    return {}


def evaluation_summary(project: Project, run_id: int) -> dict[str, float]:
    """The newest result of each kind for a run, flat: {"knn_top1": .., "linear_top1": ..,
    "finetune_top1": .., "fewshot_5": .., "retrieval_map": .., "effective_rank": .., ...}
    (the keys of the protocols' columns)."""
    out: dict[str, float] = {}
    for ev in project.evaluations(run_id):
        out.update(summarize(ev.kind, ev.metrics))
    return out


def summary_columns() -> list[tuple[Protocol, Column]]:
    """Every column of the summary in the table's order, each with the protocol it comes from."""
    return [(p, c) for p in (*PROTOCOLS, BASELINE) for c in p.columns]
