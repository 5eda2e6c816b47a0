"""ONNX: opset 17 or later, a dynamic batch axis, checked by the onnx checker and onnxruntime."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from studio.engine.export.common import ExportError, example_input
from studio.engine.files import atomic_path

OPSET = 17
INPUT_NAME = "images"


def output_names(with_heads: bool) -> list[str]:
    return ["features", "projections"] if with_heads else ["features"]


def _torch_export(module: nn.Module, example: torch.Tensor, path: Path, outputs: list[str], opset: int) -> None:
    axes = {INPUT_NAME: {0: "batch"}, **{name: {0: "batch"} for name in outputs}}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            # The TorchScript-based exporter handles torchvision's ResNets and ViTs on every
            # torch we support; the dynamo exporter is the fallback for what it cannot trace.
            torch.onnx.export(module, (example,), str(path), input_names=[INPUT_NAME], output_names=outputs,
                              dynamic_axes=axes, opset_version=opset, dynamo=False)
        except Exception as legacy_error:  # noqa: BLE001 - any failure: try the other exporter
            try:
                batch = torch.export.Dim("batch", min=1)
                program = torch.onnx.export(module, (example,), input_names=[INPUT_NAME], output_names=outputs,
                                            dynamic_shapes=({0: batch},), opset_version=opset, dynamo=True,
                                            external_data=False)
                program.save(str(path))
            except Exception as exc:  # noqa: BLE001
                raise ExportError(
                    f"this encoder could not be exported to ONNX ({legacy_error.__class__.__name__}: {str(legacy_error)[:200]}); "
                    "export to TorchScript or safetensors instead."
                ) from exc


def export_onnx(module: nn.Module, image_size: int, path: str | os.PathLike, with_heads: bool = False,
                opset: int = OPSET, atol: float = 1e-4) -> Path:
    """Export, run the onnx checker, then compare onnxruntime with torch on a batch of another size
    than the traced one (so a batch size baked into the graph is caught here)."""
    import onnx
    import onnxruntime as ort

    module = module.cpu().eval()
    outputs = output_names(with_heads)
    path = Path(path)
    with atomic_path(path) as tmp:
        _torch_export(module, example_input(image_size, batch=2), tmp, outputs, opset)
        model = onnx.load(str(tmp))
        try:
            onnx.checker.check_model(model, full_check=True)
        except onnx.checker.ValidationError as exc:
            raise ExportError(f"the exported ONNX graph is invalid: {str(exc).splitlines()[0][:200]}") from exc
        check = example_input(image_size, batch=3)
        session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        got = session.run(None, {INPUT_NAME: check.numpy()})
        with torch.no_grad():
            want = module(check)
        want = list(want) if isinstance(want, (tuple, list)) else [want]
        for g, w in zip(got, want):
            w = w.numpy()
            if g.shape != w.shape or not np.allclose(g, w, atol=atol, rtol=0):
                raise ExportError("onnxruntime does not reproduce the encoder on the exported graph; export to TorchScript or safetensors instead.")
    return path
