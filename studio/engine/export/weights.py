"""Weights files: a state dict that loads with `load_state_dict(strict=True)` into a fresh model
built by the encoder's own library (torchvision or timm), with no key renaming.

The studio's backbones keep their library model whole in `.model`, so its state dict *is* the
library's state dict. For torchvision models the classifier (`fc` of a ResNet, `heads` of a ViT)
is part of that state dict although self-supervised training never touches it: it is kept, at
its fresh initialisation, so that strict loading works; the card says to replace it by
`nn.Identity()` to get the features.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from studio.engine.export.common import HEADS_PREFIX, ExportError
from studio.engine.files import atomic_path


def library_state_dict(backbone: nn.Module) -> dict[str, torch.Tensor]:
    """The library model's own state dict, as standalone contiguous CPU tensors."""
    model = getattr(backbone, "model", None)
    if model is None:
        raise ExportError("this encoder does not wrap a torchvision or timm model; export to TorchScript or ONNX instead.")
    return {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}


def heads_state_dict(method_state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Everything of the method but its encoder (heads, momentum copies), under HEADS_PREFIX."""
    return {HEADS_PREFIX + k: v.detach().cpu().contiguous().clone()
            for k, v in method_state.items() if not k.startswith("backbone.")}


def build_library_model(arch: Mapping[str, Any]) -> nn.Module:
    """A fresh, randomly initialised model of the library named by `arch`, as a user would build it."""
    library, builder, kwargs = arch.get("library"), arch.get("builder"), dict(arch.get("kwargs") or {})
    if library == "torchvision":
        if builder == "VisionTransformer":
            from torchvision.models.vision_transformer import VisionTransformer

            return VisionTransformer(**kwargs)
        import torchvision.models as tvm

        return tvm.get_model(builder, weights=None, **kwargs)
    if library == "timm":
        try:
            import timm
        except ImportError as exc:
            raise ExportError("checking a timm export needs timm: pip install 'ssl-studio[timm]'.") from exc
        return timm.create_model(builder, pretrained=False, **kwargs)
    raise ExportError(f"no library weights format for an encoder built by {library!r}; export to TorchScript, ONNX or safetensors.")


def check_strict_load(arch: Mapping[str, Any], state: Mapping[str, torch.Tensor]) -> None:
    """Refuse to write a file the card promises loads strictly when it would not."""
    try:
        build_library_model(arch).load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ExportError(
            f"the weights would not load strictly into {arch.get('library')}'s {arch.get('builder')}: "
            f"{str(exc).splitlines()[0][:200]}"
        ) from exc


def export_torchvision(backbone: nn.Module, path: str | os.PathLike, heads: Mapping[str, torch.Tensor] | None = None) -> list[Path]:
    """`torch.save` of the library state dict (loadable with `torch.load(..., weights_only=True)`).

    Heads, when asked for, go to a second file `<stem>.heads.pth`: keeping them out of the main
    file is what lets it load with strict=True into the library model.
    """
    state = library_state_dict(backbone)
    check_strict_load(backbone.arch, state)
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    written = [path]
    if heads:
        heads_path = path.with_name(f"{path.stem}.heads{path.suffix or '.pth'}")
        with atomic_path(heads_path) as tmp:
            torch.save(dict(heads), tmp)
        written.append(heads_path)
    return written


def export_safetensors(backbone: nn.Module, path: str | os.PathLike, heads: Mapping[str, torch.Tensor] | None = None,
                       metadata: Mapping[str, str] | None = None) -> list[Path]:
    """safetensors of the library state dict (keys as torchvision/timm name them); heads, when
    asked for, in the same file under the `ssl_heads.` prefix (filter them out to load strictly)."""
    from safetensors.torch import save_file

    state = library_state_dict(backbone)
    check_strict_load(backbone.arch, state)
    if heads:
        state.update(heads)
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={k: str(v) for k, v in (metadata or {}).items()})
    return [path]
