"""What the benchmarks share: one JSON line out, the machine they ran on, small data made here."""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def machine() -> dict:
    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    return {"cores": os.cpu_count(), "device": device, "torch": torch.__version__, "python": platform.python_version()}


def emit(name: str, **fields) -> None:
    """The one JSON line a benchmark prints on stdout."""
    print(json.dumps({"bench": name, **fields, "machine": machine()}), flush=True)


def sample_images(size: int):
    """The built-in sample decoded at `size` px (uint8 N x 3 x S x S) with its labels."""
    from studio.engine.data import SampleSource, decode_images

    return decode_images(SampleSource(), size)
