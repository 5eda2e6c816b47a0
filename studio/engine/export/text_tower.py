"""Exports of an image-text run (CLIP): both towers, each giving L2-normalised embeddings in the
shared space, so that an image's and a sentence's dot product is their cosine similarity.

TorchScript and ONNX write two graphs, the image tower (backbone + projection) as the main file
and the text tower (tokens in) beside it as `<name>.text<suffix>`; safetensors keeps both towers
in its one file (the text tower, projection and temperature under the heads prefix). The tokenizer
is open_clip's CLIP BPE tokenizer, named in the model card.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from studio.engine.export.common import ExportError
from studio.engine.files import atomic_path

TOKENS_NAME = "tokens"
TOKENIZER = "open_clip.tokenizer.SimpleTokenizer (CLIP's BPE, 49,408 tokens; its vocabulary ships with open-clip-torch)"


def is_image_text(config) -> bool:
    from studio.engine.methods import method_class

    return bool(getattr(method_class(config.method), "image_text", False))


class ImageEmbedder(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(images)


class TextEmbedder(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.model.encode_text(tokens)


def text_path(path: str | os.PathLike) -> Path:
    """encoder.onnx -> encoder.text.onnx; encoder.torchscript.pt -> encoder.text.torchscript.pt."""
    path = Path(path)
    stem, _, rest = path.name.partition(".")
    return path.with_name(f"{stem}.text.{rest}" if rest else f"{stem}.text")


def load_model(loaded):
    """The checkpoint's whole image-text model (both towers), in eval mode on the CPU."""
    from studio.engine.train.trainer import build_method

    config = dataclasses.replace(loaded.config, pretrained=False, init_from=None)
    model = build_method(config)
    model.load_state_dict(loaded.method_state, strict=True)
    return model.cpu().eval()


def _example_tokens(model, batch: int) -> torch.Tensor:
    return model.tokenizer(["a photo of a cat."] + ["an image of something else"] * (batch - 1))


def _torchscript_text(module: nn.Module, model, path: Path, atol: float) -> Path:
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(module, (_example_tokens(model, 2),), check_trace=False)
    with atomic_path(path) as tmp:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.jit.save(traced, str(tmp))
            loaded = torch.jit.load(str(tmp), map_location="cpu").eval()
        check = _example_tokens(model, 3)
        with torch.no_grad():
            if not torch.allclose(loaded(check), module(check), atol=atol, rtol=0):
                raise ExportError("the TorchScript trace does not reproduce the text tower; export to safetensors instead.")
    return path


def _onnx_text(module: nn.Module, model, path: Path, atol: float, opset: int = 17) -> Path:
    import onnx
    import onnxruntime as ort

    with atomic_path(path) as tmp:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, (_example_tokens(model, 2),), str(tmp), input_names=[TOKENS_NAME],
                              output_names=["embeddings"], opset_version=opset, dynamo=False,
                              dynamic_axes={TOKENS_NAME: {0: "batch"}, "embeddings": {0: "batch"}})
        onnx.checker.check_model(onnx.load(str(tmp)), full_check=True)
        check = _example_tokens(model, 3)
        session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        got = session.run(None, {TOKENS_NAME: check.numpy()})[0]
        with torch.no_grad():
            want = module(check).numpy()
        if got.shape != want.shape or not np.allclose(got, want, atol=atol, rtol=0):
            raise ExportError("onnxruntime does not reproduce the text tower on the exported graph; export to safetensors instead.")
    return path


def export_image_text(loaded, format: str, path: str | os.PathLike, metadata: Mapping[str, str] | None = None,
                      atol: float = 1e-4) -> list[Path]:
    """Write both towers of an image-text run in `format` (torchscript | onnx | safetensors);
    returns the files, the image tower's first."""
    from studio.engine.export import weights

    model = load_model(loaded)
    size = int(loaded.config.image_size)
    if format == "safetensors":
        return weights.export_safetensors(model.backbone, path, weights.heads_state_dict(loaded.method_state),
                                          metadata={**(metadata or {}), "tokenizer": TOKENIZER})
    if format == "torchscript":
        from studio.engine.export.torchscript import export_torchscript

        return [export_torchscript(ImageEmbedder(model), size, path, atol=atol),
                _torchscript_text(TextEmbedder(model), model, text_path(path), atol)]
    if format == "onnx":
        from studio.engine.export.onnx_export import export_onnx

        return [export_onnx(ImageEmbedder(model), size, path, atol=atol),
                _onnx_text(TextEmbedder(model), model, text_path(path), atol)]
    raise ExportError(f"an image-text run exports both towers to torchscript, onnx or safetensors, not {format}.")


def card_extra(loaded, files: list[Path]) -> dict[str, Any]:
    cfg = loaded.config.method_config
    extra: dict[str, Any] = {"tokenizer": TOKENIZER, "context_length": int(cfg.get("context_length", 77)),
                             "embed_dim": int(cfg.get("embed_dim", 256)), "image_text": True}
    if len(files) > 1:
        extra["text_file"] = files[1].name
    return extra


def snippet(card: Mapping[str, Any]) -> str:
    """Python that embeds an image and a sentence with the exported towers and prints their similarity."""
    from studio.engine.export.card import _prep_lines

    fmt, file, text = card["format"], card["file"], card.get("text_file")
    tok = [f"from open_clip.tokenizer import SimpleTokenizer  # {card['tokenizer'].split(' (')[0]}",
           f'tokens = SimpleTokenizer(context_length={card["context_length"]})(["a photo of a cat."])']
    if fmt == "torchscript":
        lines = ["import torch, torchvision.transforms as T", "from PIL import Image", *tok, *_prep_lines(card),
                 f'image_tower, text_tower = torch.jit.load("{file}").eval(), torch.jit.load("{text}").eval()',
                 "with torch.no_grad():",
                 "    print((image_tower(x) @ text_tower(tokens).T).item())  # cosine similarity, -1 to 1"]
    elif fmt == "onnx":
        lines = ["import onnxruntime as ort, torchvision.transforms as T", "from PIL import Image", *tok,
                 *_prep_lines(card, numpy=True),
                 f'image = ort.InferenceSession("{file}").run(None, {{"images": x}})[0]',
                 f'text = ort.InferenceSession("{text}").run(None, {{"tokens": tokens.numpy()}})[0]',
                 "print((image @ text.T).item())  # cosine similarity, -1 to 1"]
    else:
        return card["snippet"]
    return "\n".join(lines) + "\n"
