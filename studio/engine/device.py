"""Choosing the best local device and its mixed-precision settings."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from studio.engine.errors import ConfigError


@dataclass(frozen=True)
class DeviceInfo:
    device: torch.device
    name: str
    amp_dtype: torch.dtype | None  # None: train in float32
    total_memory: int | None  # bytes, where the device tells

    @property
    def type(self) -> str:
        return self.device.type


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def available_devices() -> list[str]:
    """The device names a user can pick, best first, always ending with 'cpu'."""
    names = []
    if torch.cuda.is_available():
        names.append("cuda")
    if _mps_available():
        names.append("mps")
    names.append("cpu")
    return names


def resolve_device(requested: str = "auto", amp: bool = True) -> DeviceInfo:
    """Turn 'auto' | 'cpu' | 'cuda' | 'cuda:1' | 'mps' into a device and its AMP dtype.

    AMP is used on CUDA (bf16 where supported, else fp16) and not on the CPU, where autocast's
    bf16 kernels are slower than float32 on most machines.
    """
    requested = (requested or "auto").lower()
    if requested == "auto":
        requested = available_devices()[0]
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError("CUDA was asked for but no CUDA device is available; set the device to cpu or auto.",
                              setting="device")
        dev = torch.device(requested)
        idx = dev.index if dev.index is not None else torch.cuda.current_device()
        props = torch.cuda.get_device_properties(idx)
        dtype = None
        if amp:
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return DeviceInfo(dev, props.name, dtype, int(props.total_memory))
    if requested == "mps":
        if not _mps_available():
            raise ConfigError("Apple MPS was asked for but is not available; set the device to cpu or auto.", setting="device")
        return DeviceInfo(torch.device("mps"), "Apple GPU (MPS)", torch.float16 if amp else None, None)
    if requested == "cpu":
        return DeviceInfo(torch.device("cpu"), "CPU", None, None)
    raise ConfigError(f"unknown device {requested!r}; choose auto, cpu, cuda or mps.", setting="device")


def describe_device(info: DeviceInfo) -> str:
    if info.total_memory:
        return f"{info.name} ({info.total_memory / 2**30:.1f} GiB)"
    return info.name
