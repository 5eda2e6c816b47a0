"""methods, backbones: what can be trained, read from the engine's own tables."""

from __future__ import annotations

import argparse

from studio.cli import emit_json


def _methods(args: argparse.Namespace) -> int:
    from studio.engine.methods import METHODS

    described = [cls.describe() for cls in METHODS.values()]
    if args.json:
        emit_json({"methods": described})
        return 0
    for d in described:
        print(f"{d['name']}  ({d['family']}; backbones: {', '.join(d['backbones'])}; "
              f"{d['optimizer']}, lr {d['lr']:g} per 256 images)")
        print(f"    {d['summary']}")
        for f in d["fields"]:
            bounds = ""
            if f["choices"]:
                bounds = f" [{' | '.join(map(str, f['choices']))}]"
            elif f["min"] is not None or f["max"] is not None:
                lo = "" if f["min"] is None else f"{f['min']:g}"
                hi = "" if f["max"] is None else f"{f['max']:g}"
                bounds = f" [{lo}..{hi}]"
            setting = f"--set {f['name']}={f['default']}"
            print(f"    {setting:<32} {f['type']}{bounds}: {f['help']}")
        print()
    return 0


def backbone_json(spec) -> dict:
    return {
        "name": spec.name,
        "feature_dim": spec.feature_dim,
        "kind": spec.kind,
        "description": spec.description,
        "options": dict(spec.options),
        "pretrained_weights": spec.pretrained_weights,
    }


def _backbones(args: argparse.Namespace) -> int:
    from studio.engine.backbones import BACKBONES

    rows = [backbone_json(spec) for spec in BACKBONES.values()]
    if args.json:
        emit_json({"backbones": rows})
        return 0
    for r in rows:
        options = f"  (options: {', '.join(r['options'])})" if r["options"] else ""
        print(f"{r['name']:<19} {r['kind']:<4} {r['feature_dim']:>5}  {r['description']}{options}")
    print(f"{'timm:NAME':<19} any timm model, with 'pip install ssl-studio[timm]'")
    return 0


def register(sub) -> None:
    p = sub.add_parser("methods", help="every method, its family and its config fields with defaults")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_methods)

    b = sub.add_parser("backbones", help="every backbone, its feature size and kind (cnn | vit)")
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=_backbones)
