"""torch.export: an ExportedProgram saved as `.pt2`, the format torch recommends now that
TorchScript is deprecated; it loads with `torch.export.load(path).module()` alone (no studio, no
torchvision) and takes any batch size (the image size is fixed, as the card says)."""

from __future__ import annotations

import io
import logging
import os
import sys
import threading
from contextlib import contextmanager, redirect_stderr
from pathlib import Path
from typing import Iterator

import torch
from torch import nn

from studio.engine.export.common import ExportError, example_input
from studio.engine.files import atomic_path

# Batches the saved program is checked on: neither is the traced batch (2), and 1 is the card's
# snippet, so a batch size baked into the program is caught before the file is shipped.
CHECK_BATCHES = (3, 1)

# torch logs a failed trace's guards as warnings and prints its partial graph on standard error;
# the export's error says what failed instead (CLI.md: one clear line on standard error).
_NOISY_LOGGERS = ("torch.fx.experimental.symbolic_shapes", "torch._dynamo", "torch._export", "torch.export",
                  "torch.export.pt2_archive")
# torch.export keeps module-level state while it traces: one trace at a time (two export dialogs
# may run at once), which also keeps the standard-error swap below from interleaving.
_TRACE_LOCK = threading.Lock()


@contextmanager
def _quiet_torch_logs() -> Iterator[None]:
    loggers = [logging.getLogger(name) for name in _NOISY_LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


@contextmanager
def _quiet_trace() -> Iterator[None]:
    """Trace without torch's diagnostics on standard error: what else was written there meanwhile
    is passed on once the trace succeeds; a failed trace's partial graph is dropped."""
    captured = io.StringIO()
    with _TRACE_LOCK, _quiet_torch_logs():
        real = sys.stderr
        with redirect_stderr(captured):
            yield
        if captured.getvalue() and real is not None:
            real.write(captured.getvalue())


def _outputs(result) -> list[torch.Tensor]:
    return list(result) if isinstance(result, (tuple, list)) else [result]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else exc.__class__.__name__)[:200]


def trace_program(module: nn.Module, image_size: int) -> torch.export.ExportedProgram:
    """`torch.export.export` of `module` (eval mode, CPU) with a free batch dimension; a module
    torch cannot export so is an ExportError that says why and what to export instead."""
    module = module.cpu().eval()
    example = example_input(image_size, batch=2)
    batch = torch.export.Dim("batch", min=1)
    try:
        with _quiet_trace():
            return torch.export.export(module, (example,), dynamic_shapes=({0: batch},))
    except Exception as exc:  # noqa: BLE001 - every way torch.export fails becomes one clear message
        if "Constraints violated" in str(exc):
            raise ExportError(
                "torch.export cannot keep the batch size free for this encoder: its code fixes the batch to "
                "the example's; export to ONNX, TorchScript or safetensors instead."
            ) from exc
        raise ExportError(
            f"torch.export cannot trace this encoder ({exc.__class__.__name__}: {_first_line(exc)}); "
            "export to ONNX, TorchScript or safetensors instead."
        ) from exc


def export_program(module: nn.Module, image_size: int, path: str | os.PathLike, atol: float = 1e-5) -> Path:
    """Export `module` with torch.export and save it to `path` (`.pt2`); the saved file is loaded
    back and must reproduce the module on batches of other sizes than the traced one."""
    module = module.cpu().eval()
    program = trace_program(module, image_size)
    path = Path(path)
    with atomic_path(path) as tmp:
        # A file object, not the temporary name: torch warns about any file not named *.pt2.
        with open(tmp, "wb") as f, _quiet_torch_logs():
            torch.export.save(program, f)
        with open(tmp, "rb") as f, _quiet_torch_logs():
            loaded = torch.export.load(f).module()
        for n in CHECK_BATCHES:
            check = example_input(image_size, batch=n)
            try:
                with torch.no_grad():
                    got, want = _outputs(loaded(check)), _outputs(module(check))
            except Exception as exc:  # noqa: BLE001 - a program that refuses a batch size is not shipped
                raise ExportError(
                    f"the saved torch.export program does not run on a batch of {n} ({_first_line(exc)}); "
                    "export to ONNX or safetensors instead."
                ) from exc
            for g, w in zip(got, want):
                if g.shape != w.shape or not torch.allclose(g, w, atol=atol, rtol=atol):
                    raise ExportError("the saved torch.export program does not reproduce the encoder; "
                                      "export to ONNX or safetensors instead.")
    return path
