"""eval, embed, search, inspect."""

from __future__ import annotations

import argparse

from studio.cli import UsageError, emit_json, say, whole_number
from studio.store import Project


def _reporter():
    last: dict[str, int] = {}

    def report(stage: str, done: int, total: int) -> None:
        # A stage says when it begins ("knn…"); one counted in parts (images, shots) says each
        # tenth of the way too, so a long job shows life without flooding.
        if stage not in last:
            last[stage] = 0
            say(f"{stage}…")
        if total <= 1 or done == 0:
            return
        tenth = (10 * done) // total
        if last[stage] != tenth:
            last[stage] = tenth
            say(f"{stage} {done:,}/{total:,}")

    return report


def _eval(args: argparse.Namespace) -> int:
    from studio.engine.eval import EvaluationError
    from studio.services.evaluation import evaluate_run, resolve_protocols

    knn, linear, finetune = args.knn, args.linear, args.finetune
    protocols = None
    if args.tasks is not None:
        words = list(args.tasks)
        if knn or linear or finetune:
            words += [w for w, on in (("knn", knn), ("linear", linear), ("finetune", finetune)) if on]
        try:
            resolve_protocols(words)
        except EvaluationError as exc:
            raise UsageError(f"--tasks: {exc}") from exc
        protocols = words  # resolved again by the service, which knows whether the run has a text tower
    elif not (knn or linear or finetune):
        knn = linear = True  # the two cheap ones, as the CLI contract's example
    with Project.open(args.project) as project:
        result = evaluate_run(
            project, args.run_id, dataset=args.dataset, checkpoint_step=args.step, knn=knn, linear=linear,
            finetune=finetune, baseline=args.baseline, finetune_epochs=args.epochs, device=args.device,
            report=_reporter(), protocols=protocols, finetune_steps=args.finetune_steps,
            zeroshot_templates=args.template,
        )
    if args.json:
        emit_json(result)
    else:
        for key, value in result.items():
            print(f"{key}\t{_plain(value)}")
    return 0


def _plain(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, dict):
        return "  ".join(f"{k} {_plain(v)}" for k, v in value.items())
    return str(value)


def _embed(args: argparse.Namespace) -> int:
    from studio.services.evaluation import compute_embeddings, embedding_map

    with Project.open(args.project) as project:
        report = _reporter()
        emb = compute_embeddings(project, args.run_id, dataset=args.dataset, checkpoint_step=args.step,
                                 device=args.device, report=report)
        result = {"run_id": args.run_id, "checkpoint_step": emb.record.checkpoint_step, "dataset": emb.dataset.name if emb.dataset else None,
                  "points": len(emb), "dim": int(emb.vectors.shape[1]), "map": args.map,
                  "path": emb.record.path}
        if args.map:
            embedding_map(project, emb, args.map, report=report)
    if args.json:
        emit_json(result)
    else:
        say(f"{result['points']} embeddings of {result['dim']} dims in {result['path']}"
            + (f", {args.map} map stored" if args.map else ""))
    return 0


def _search(args: argparse.Namespace) -> int:
    from studio.services.explore import search_by_image, search_by_text

    with Project.open(args.project) as project:
        if args.text is not None:
            result = search_by_text(project, args.run_id, args.text, dataset=args.dataset, checkpoint_step=args.step,
                                    k=args.k, device=args.device, report=_reporter())
        else:
            result = search_by_image(project, args.run_id, args.image, dataset=args.dataset, checkpoint_step=args.step,
                                     k=args.k, device=args.device, report=_reporter())
    if args.json:
        emit_json(result)
    else:
        for hit in result["results"]:
            print(f"{hit['similarity']:.4f}\t{hit['image']}" + (f"\t{hit['label']}" if hit["label"] is not None else ""))
        say(f"search: {result['search']}")
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from studio.services.explore import DUPLICATE_THRESHOLD_RANGE, OUTLIER_K_RANGE, inspect_dataset

    lo, hi = DUPLICATE_THRESHOLD_RANGE
    if not lo <= args.threshold <= hi:
        raise UsageError(f"--threshold is a cosine similarity between {lo} and {hi}, not {args.threshold}.")
    if not OUTLIER_K_RANGE[0] <= args.k <= OUTLIER_K_RANGE[1]:
        raise UsageError(f"-k is between {OUTLIER_K_RANGE[0]} and {OUTLIER_K_RANGE[1]}, not {args.k}.")
    duplicates = args.duplicates or not args.outliers
    with Project.open(args.project) as project:
        result = inspect_dataset(project, args.run_id, dataset=args.dataset, checkpoint_step=args.step,
                                 duplicates=duplicates, threshold=args.threshold, outliers=args.outliers or 0,
                                 k=args.k, device=args.device, report=_reporter())
    if args.json:
        emit_json(result)
        return 0
    for n, group in enumerate(result.get("duplicates", []), 1):
        print(f"duplicates {n}\t" + "\t".join(group))
    for hit in result.get("outliers", []):
        print(f"outlier\t{hit['score']:.4f}\t{hit['image']}")
    if duplicates:
        say(f"{len(result['duplicates'])} groups of near duplicates (cosine >= {args.threshold}) "
            f"among {result['images']:,} images")
    return 0


_step = whole_number("--step", 0, "--step must be 0 (initial weights) or a checkpoint's step")


def register(sub) -> None:
    from studio.services.evaluation import PROTOCOL_KEYS

    e = sub.add_parser("eval", help="evaluate a run's encoder: kNN, linear probe, few-shot, fine-tuning, retrieval, "
                                    "clustering, label-free diagnostics")
    e.add_argument("project")
    e.add_argument("run_id", type=int)
    e.add_argument("--dataset", help="a labelled dataset of the project (default: the run's)")
    e.add_argument("--step", "--checkpoint", dest="step", type=_step,
                   help="checkpoint step (default: the newest; 0: initial weights)")
    e.add_argument("--tasks", "--protocol", dest="tasks", action="append", metavar="TASK[,TASK...]",
                   help=f"protocols to run: {','.join(PROTOCOL_KEYS)} or all (each stored as an evaluation)")
    e.add_argument("--knn", action="store_true", help="weighted kNN top-1 (k and temperature of the run)")
    e.add_argument("--linear", action="store_true", help="linear probe (logistic regression on frozen features)")
    e.add_argument("--finetune", action="store_true", help="fine-tune the encoder and the same from random init")
    e.add_argument("--baseline", action="store_true", help="also kNN / linear probe of the encoder at random init")
    e.add_argument("--epochs", type=whole_number("--epochs"), default=3,
                   help="fine-tuning budget in epochs over all the labels (default 3), for every share of them")
    e.add_argument("--finetune-steps", type=whole_number("--finetune-steps"), default=None, help="fine-tuning steps per share of the labels "
                   "(overrides --epochs)")
    e.add_argument("--template", action="append", metavar="TEXT",
                   help="a zero-shot prompt with {class} where the class name goes, e.g. 'a photo of a {class}.' "
                        "(repeat for several; default: the dataset's caption templates, else CLIP's)")
    e.add_argument("--device", default="auto", help="auto | cpu | cuda | mps")
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=_eval)

    m = sub.add_parser("embed", help="compute and store a run's embeddings of a dataset (and a 2-D map)")
    m.add_argument("project")
    m.add_argument("run_id", type=int)
    m.add_argument("--dataset", help="dataset to embed (default: the run's)")
    m.add_argument("--step", type=_step, help="checkpoint step (default: the newest; 0: initial weights)")
    m.add_argument("--map", choices=("pca", "tsne", "umap"), help="also compute and store this 2-D map")
    m.add_argument("--device", default="auto", help="auto | cpu | cuda | mps")
    m.add_argument("--json", action="store_true")
    m.set_defaults(func=_embed)

    from studio.services.explore import DUPLICATE_THRESHOLD, OUTLIER_K

    q = sub.add_parser("search", help="the images of a dataset nearest to an image file, by a run's encoder, or to "
                                      "a sentence, by a CLIP run's text tower")
    q.add_argument("project")
    q.add_argument("run_id", type=int)
    query = q.add_mutually_exclusive_group(required=True)
    query.add_argument("--image", help="an image file (from the dataset or anywhere on disk)")
    query.add_argument("--text", help="a sentence, e.g. \"a photo of a dog.\" (CLIP runs: compared in their "
                                      "shared image-text space)")
    q.add_argument("--dataset", help="dataset to search (default: the run's)")
    q.add_argument("--step", "--checkpoint", dest="step", type=_step, help="checkpoint step (default: the newest)")
    q.add_argument("-k", type=whole_number("-k"), default=16, help="how many images (default 16)")
    q.add_argument("--device", default="auto", help="auto | cpu | cuda | mps")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=_search)

    i = sub.add_parser("inspect", help="a dataset's near duplicates and outliers, seen through a run's encoder")
    i.add_argument("project")
    i.add_argument("run_id", type=int)
    i.add_argument("--dataset", help="dataset to inspect (default: the run's)")
    i.add_argument("--step", "--checkpoint", dest="step", type=_step, help="checkpoint step (default: the newest)")
    i.add_argument("--duplicates", action="store_true", help="groups of near copies (the default without --outliers)")
    i.add_argument("--threshold", type=float, default=DUPLICATE_THRESHOLD,
                   help=f"cosine similarity from which two images are copies (default {DUPLICATE_THRESHOLD})")
    i.add_argument("--outliers", type=whole_number("--outliers"), metavar="N",
                   help="the N images farthest from their k-th nearest neighbour")
    i.add_argument("-k", type=int, default=OUTLIER_K, help=f"the neighbour outliers are measured to (default {OUTLIER_K})")
    i.add_argument("--device", default="auto", help="auto | cpu | cuda | mps")
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=_inspect)


__all__ = ["register", "UsageError"]
