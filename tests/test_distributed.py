"""Data-parallel training: two gloo processes on the CPU train the same run as one process with
the same global batch and seed, and only rank 0 writes to the project."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import tiny_train_config

METHODS = {
    "simclr": {},
    # Small heads keep the test quick; the EMA target is what BYOL adds to check.
    "byol": {"hidden_dim": 256, "output_dim": 64},
    # A batch statistic in the loss itself: each dimension standardised over the (global) batch.
    "barlowtwins": {"hidden_dim": 128, "output_dim": 64},
}
# Checked on one step's gradient (cheap); VICReg's variance and covariance are batch statistics too.
GRADIENT_METHODS = {
    "simclr": {},
    "barlowtwins": {"hidden_dim": 64, "output_dim": 32},
    "vicreg": {"hidden_dim": 64, "output_dim": 32},
    # Two objectives on one backbone (four views: SimCLR's two and Barlow Twins' two).
    "simclr+barlowtwins": {"barlowtwins_hidden_dim": 64, "barlowtwins_output_dim": 32, "barlowtwins_weight": 0.5},
    # Keys gathered from every process as negatives; Sinkhorn codes balanced over the global batch.
    "mocov3": {"hidden_dim": 64, "output_dim": 32},
    "swav": {"hidden_dim": 64, "output_dim": 32, "prototypes": 16, "local_crops": 0},
}


class _Float64:
    """Trains in float64. In float32 a random-init ResNet on 16 px images turns rounding (which
    differs with the thread count and the order of sums) into gradients ~1 % apart through its
    ReLU kinks, within a few steps; float64 leaves only the math, which must agree."""

    def wrap_model(self, method):
        method.double()  # in place: the optimiser keeps the same Parameter objects
        return super().wrap_model(method)

    def make_views(self, x, specs):
        return [v.double() for v in super().make_views(x, specs)]


def _trainer_classes():
    from studio.engine.train import Trainer
    from studio.engine.train.distributed import DistributedTrainer

    return (type("Float64Trainer", (_Float64, Trainer), {}),
            type("Float64DistributedTrainer", (_Float64, DistributedTrainer), {}))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(method: str):
    return tiny_train_config(method=method, method_config=dict(METHODS[method]), steps=3, batch_size=16,
                             image_size=8, checkpoint_every=2, log_every=1, monitor_every=-1)


def _worker(rank: int, world: int, port: int, project_path: str, out_path: str) -> None:
    """One of the processes torchrun would start (spawned here to save its start-up time)."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    from studio.engine.train.distributed import init_distributed, shutdown_distributed, torchrun_env
    from studio.services.distributed import train_distributed

    ctx = init_distributed(torchrun_env(), "cpu")
    results = {}
    try:
        for method in METHODS:
            outcome = train_distributed(ctx, project_path, {"new": ("sample", _config(method))},
                                        trainer_factory=_trainer_classes()[1])
            results[method] = {"run_id": outcome.run_id, "status": outcome.result.status,
                               "reason": outcome.result.reason, "checkpoint": outcome.checkpoint}
    finally:
        shutdown_distributed()
    Path(f"{out_path}.{rank}").write_text(json.dumps(results))


def _one_process_losses(project, method: str, run_dir: Path) -> list[float]:
    from studio.engine.train import TrainingCallbacks
    from studio.services.datasets import load_images

    class Losses(TrainingCallbacks):
        def __init__(self):
            self.values = {}

        def on_metrics(self, step, epoch, metrics):
            if "loss" in metrics:
                self.values[step] = metrics["loss"]

    config = _config(method)
    images = load_images(project, project.dataset("sample"), config.image_size)
    losses = Losses()
    result = _trainer_classes()[0](config, images, run_dir, callbacks=[losses]).run()
    assert result.status == "finished", result.reason
    return [losses.values[s] for s in sorted(losses.values)]


def test_two_processes_train_like_one(project, tmp_path):
    """SimCLR (gathered negatives, BatchNorm in the heads), BYOL (momentum target, BatchNorm in
    both networks) and Barlow Twins (standardised over the gathered batch): same loss curve as one process with the global batch, one run each in the
    database with rank 0's checkpoints, nothing written by rank 1."""
    import torch.multiprocessing as mp

    from studio.store import Project

    path = str(project.root)
    out = str(tmp_path / "result")
    mp.spawn(_worker, args=(2, _free_port(), path, out), nprocs=2, join=True)
    ranks = [json.loads(Path(f"{out}.{r}").read_text()) for r in range(2)]

    with Project.open(path) as p:
        runs = p.runs()
        assert len(runs) == len(METHODS)  # rank 1 created nothing
        for method in METHODS:
            info = ranks[0][method]
            assert info["status"] == "finished", info["reason"]
            assert ranks[1][method]["run_id"] == info["run_id"] and ranks[1][method]["status"] == "finished"
            run = p.run(info["run_id"])
            assert run.method == method and run.status == "finished" and run.steps == 3
            assert run.config["device"] == "cpu"
            assert [c.step for c in p.checkpoints(run.id)] == [2, 3]
            assert info["checkpoint"] == f"runs/{run.id}/last.ckpt"
            assert all(p.abs(c.path).is_file() for c in p.checkpoints(run.id))
            series = p.metric_series(run.id, ["loss"])
            distributed = [v for _, v in sorted(zip(series.steps["loss"], series.values["loss"]))]
            reference = _one_process_losses(p, method, tmp_path / f"ref-{method}")
            assert len(distributed) == len(reference) == 3
            np.testing.assert_allclose(distributed, reference, rtol=1e-5, atol=1e-6, err_msg=method)
        # Only checkpoints rank 0 wrote: no stray temporary files from another process.
        written = sorted(f.name for f in (Path(path) / "runs").rglob("*") if f.is_file())
        assert written == sorted(["step-2.ckpt", "last.ckpt"] * len(METHODS))


def test_gradient_matches_one_process_in_float64():
    """The gloo SyncBatchNorm plus the gathered losses (lightly's NT-Xent and VICReg, Barlow Twins
    on gathered embeddings) give exactly (float64) the gradient of one process over the global
    batch; the loss value is the global loss on both ranks."""
    import torch.multiprocessing as mp

    mp.spawn(_gradient_worker, args=(2, _free_port()), nprocs=2, join=True)


def _gradient_worker(rank: int, world: int, port: int) -> None:
    import copy

    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from studio.engine.methods import StepState
    from studio.engine.train.distributed import _DistributedStep, convert_sync_batchnorm
    from studio.engine.train.trainer import _StepModule, build_method

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        for method, method_config in GRADIENT_METHODS.items():
            torch.manual_seed(0)
            cfg = tiny_train_config(method=method, method_config=dict(method_config), batch_size=8)
            one = build_method(cfg, world_size=1).double()
            many = build_method(cfg, world_size=world).double()
            many.load_state_dict(copy.deepcopy(one.state_dict()))
            convert_sync_batchnorm(many, "cpu")
            step = _DistributedStep(DistributedDataParallel(_StepModule(many), find_unused_parameters=True), world)
            g = torch.Generator().manual_seed(1)
            views = [torch.randn(8, 3, 16, 16, generator=g, dtype=torch.float64) for _ in one.view_specs(16)]
            state = StepState(0, 1)
            ref = one.training_step(views, state)["loss"]
            ref.backward()
            share = slice(rank * 4, rank * 4 + 4)
            loss = step([v[share] for v in views], state)["loss"]
            loss.backward()
            torch.testing.assert_close(loss.detach(), ref.detach(), rtol=1e-10, atol=1e-10, msg=lambda m: f"{method}: {m}")
            checked = 0
            for (name, a), (_, b) in zip(one.named_parameters(), many.named_parameters()):
                if a.grad is not None:
                    torch.testing.assert_close(b.grad, a.grad, rtol=1e-7, atol=1e-9, msg=f"{method}: {name}")
                    checked += 1
            assert checked > 0, method
    finally:
        dist.destroy_process_group()


def test_gpus_refused_without_enough_cuda_devices(project):
    from studio.cli import main

    code = main(["train", str(project.root), "--dataset", "sample", "--method", "simclr", "--backbone", "resnet18",
                 "--steps", "2", "--gpus", "2"])
    assert code == 1
    assert project.runs() == []


def test_gpus_stores_the_run_and_hands_torchrun_its_id(project, monkeypatch):
    """`train --gpus N` stores the run once here (every setting, --set included) and starts torchrun
    with `train P --run-id ID`: the processes train that stored run, the launcher's flags are not
    re-parsed by them, and --gpus is not forwarded (it would launch again)."""
    import studio.services.distributed as distributed
    from studio.cli import build_parser, main

    seen = {}

    def fake_launch(count, studio_args):
        seen["count"], seen["args"] = count, list(studio_args)
        return 0

    monkeypatch.setattr(distributed, "launch_torchrun", fake_launch)
    code = main(["train", str(project.root), "--dataset", "sample", "--method", "simclr", "--backbone", "resnet18",
                 "--steps", "3", "--set", "temperature=0.2", "--device", "cpu", "--json", "--gpus", "2"])
    assert code == 0
    [run] = project.runs()
    assert run.status == "queued" and run.config["steps"] == 3
    assert run.config["method_config"]["temperature"] == 0.2
    assert seen["count"] == 2 and "--gpus" not in seen["args"]
    again = build_parser().parse_args(seen["args"])
    assert (again.command, again.project, again.run_id, again.device, again.json) == (
        "train", str(project.root), run.id, "cpu", True)


def test_stored_run_command_reaches_studio_through_torchrun(monkeypatch):
    """The GUI's command for a stored run: torchrun's own parser leaves every studio argument to
    the studio (an option that abbreviates one of torchrun's, such as '--run' for '--run-path', would
    be taken by torchrun), and the studio's parser reads the run id; faked GPUs train on the CPU."""
    from torch.distributed.run import get_args_parser

    from studio.cli import build_parser
    from studio.services.distributed import FAKE_GPUS_ENV, cuda_device_count, stored_run_command

    for fake, device in (("2", "cpu"), (None, "cuda")):
        if fake is None:
            monkeypatch.delenv(FAKE_GPUS_ENV, raising=False)
        else:
            monkeypatch.setenv(FAKE_GPUS_ENV, fake)
        command = stored_run_command("/projects/p", 7, 2)
        assert command[:3] == [sys.executable, "-m", "torch.distributed.run"]
        launcher = get_args_parser().parse_args(command[3:])
        assert launcher.module and launcher.training_script == "studio" and launcher.nproc_per_node == "2"
        args = build_parser().parse_args(launcher.training_script_args)
        assert (args.command, args.project, args.run_id, args.device) == ("train", "/projects/p", 7, device)
    monkeypatch.setenv(FAKE_GPUS_ENV, "3")
    assert cuda_device_count() == 3


def test_cli_run_id_trains_a_queued_run_once(project):
    """`train PROJECT --run-id ID`: the stored run, with its own settings, and only while queued."""
    from conftest import tiny_train_config

    from studio.cli import main
    from studio.services.training import create_run

    run = create_run(project, "sample", tiny_train_config(steps=2, batch_size=8, image_size=8, monitor_every=-1))
    assert main(["train", str(project.root), "--run-id", str(run.id)]) == 0
    assert project.run(run.id).status == "finished" and project.run(run.id).steps == 2
    assert len(project.runs()) == 1
    assert main(["train", str(project.root), "--run-id", str(run.id)]) == 1  # not queued any more: refused
    with pytest.raises(SystemExit):  # settings come from the stored run
        main(["train", str(project.root), "--run-id", str(run.id), "--steps", "5"])


@pytest.mark.skipif(sys.platform == "win32", reason="torchrun's standalone rendezvous")
def test_cli_gpus_on_cpu_end_to_end(project):
    """`ssl-studio train ... --gpus 2 --device cpu`: torchrun, two gloo processes, one JSON line
    (rank 0), one run in the project."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "studio", "train", str(project.root), "--dataset", "sample", "--method", "simclr",
         "--backbone", "resnet18", "--steps", "2", "--batch-size", "8", "--image-size", "16", "--device", "cpu",
         "--json", "--gpus", "2"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stdout
    payload = json.loads(lines[0])
    assert payload["status"] == "finished" and payload["steps"] == 2 and payload["processes"] == 2
    runs = project.runs()
    assert [r.id for r in runs] == [payload["run_id"]]
    assert [c.path for c in project.checkpoints(payload["run_id"])] == [payload["checkpoint"]]
