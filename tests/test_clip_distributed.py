"""CLIP across processes: two gloo processes on the CPU, each with half the global batch, give
the loss and the gradients of one process on the whole batch (open_clip's ClipLoss gathers the
other ranks' features with their gradient), as test_distributed checks SimCLR's."""

from __future__ import annotations

import copy
import os
import socket
from types import SimpleNamespace

import torch

from conftest import tiny_train_config

CAPTIONS = [[f"a photo of a {c}.", f"a picture of the {c}"] for c in ("cat", "dog", "owl", "fox", "emu", "yak", "elk", "ant")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        for loss_name in ("clip", "siglip"):
            _check(rank, world, loss_name)
    finally:
        dist.destroy_process_group()


def _check(rank: int, world: int, loss_name: str) -> None:
    from torch.nn.parallel import DistributedDataParallel

    from studio.engine.methods import StepState
    from studio.engine.train.distributed import _DistributedStep
    from studio.engine.train.trainer import _StepModule, build_method

    torch.manual_seed(0)
    cfg = tiny_train_config(method="clip", backbone="vit_tiny", backbone_options={"num_layers": 1, "patch_size": 4},
                            image_size=8, batch_size=8,
                            method_config={"text_tower": "tiny", "embed_dim": 16, "context_length": 12, "loss": loss_name})
    data = SimpleNamespace(captions=CAPTIONS)
    one = build_method(cfg, world_size=1).double()
    many = build_method(cfg, world_size=world).double()
    many.load_state_dict(copy.deepcopy(one.state_dict()))
    one.attach_data(data)
    many.attach_data(data)
    step = _DistributedStep(DistributedDataParallel(_StepModule(many), find_unused_parameters=True), world)
    x = torch.randn(8, 3, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    state = StepState(3, 10, indices=torch.tensor([5, 0, 7, 2, 1, 6, 3, 4]))
    ref = one.training_step([x], state)["loss"]
    ref.backward()
    loss = step([x[rank * 4:rank * 4 + 4]], state)["loss"]
    loss.backward()
    torch.testing.assert_close(loss.detach(), ref.detach(), rtol=1e-10, atol=1e-10, msg=lambda m: f"{loss_name}: {m}")
    checked = 0
    for (name, a), (_, b) in zip(one.named_parameters(), many.named_parameters()):
        if a.grad is not None:
            torch.testing.assert_close(b.grad, a.grad, rtol=1e-7, atol=1e-9, msg=lambda m: f"{loss_name} {name}: {m}")
            checked += 1
    assert checked > 10, loss_name  # both towers, the projection and the temperature


def test_clip_and_siglip_losses_and_gradients_over_two_processes_equal_one_process_on_the_global_batch():
    import torch.multiprocessing as mp

    mp.spawn(_worker, args=(2, _free_port()), nprocs=2, join=True)
