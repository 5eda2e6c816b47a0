"""TorchScript: a traced encoder that runs with `torch.jit.load` alone (no studio, no torchvision)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
from torch import nn

from studio.engine.export.common import ExportError, example_input
from studio.engine.files import atomic_path


def _outputs(result) -> list[torch.Tensor]:
    return list(result) if isinstance(result, (tuple, list)) else [result]


def export_torchscript(module: nn.Module, image_size: int, path: str | os.PathLike, atol: float = 1e-4) -> Path:
    """Trace `module` (eval mode, CPU) and save it; the saved file is loaded back and checked on a
    batch of another size, so a trace that baked in the batch size is refused, not shipped."""
    module = module.cpu().eval()
    example = example_input(image_size, batch=2)
    with torch.no_grad(), warnings.catch_warnings():
        # Tracing warns that jit is deprecated and that ViT's size asserts become constants;
        # both are expected: the image size is fixed by the card.
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(module, example, check_trace=False)
    path = Path(path)
    with atomic_path(path) as tmp:
        with warnings.catch_warnings():
            # torch warns at every save that TorchScript is deprecated: the card says so once.
            warnings.filterwarnings("ignore", message=".*(deprecat|TorchScript).*")
            torch.jit.save(traced, str(tmp))
        check = example_input(image_size, batch=3)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            loaded = torch.jit.load(str(tmp), map_location="cpu").eval()
            got, want = _outputs(loaded(check)), _outputs(module(check))
        for g, w in zip(got, want):
            if g.shape != w.shape or not torch.allclose(g, w, atol=atol, rtol=0):
                raise ExportError("the TorchScript trace does not reproduce the encoder; export to ONNX or safetensors instead.")
    return path
