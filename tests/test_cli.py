"""`ssl-studio` against the words of CLI.md: outputs, JSON fields, exit codes, Ctrl-C and resume.

Most commands run in-process through `studio.cli.main`; `--version` and one `train --json`
(stopped with a real SIGINT) run as real processes. Training is tiny: the sample at 8 px."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from studio.cli import main

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ["--dataset", "sample", "--method", "simclr", "--backbone", "resnet18", "--image-size", "8", "--device", "cpu"]


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def one_json(stdout: str) -> dict:
    lines = stdout.strip().splitlines()
    assert len(lines) == 1, stdout  # exactly one object on stdout, progress went to stderr
    return json.loads(lines[0])


@pytest.fixture(scope="module")
def proj(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "proj"
    assert run_cli("init", path)[0] == 0
    code, out, err = run_cli("dataset", "add", path, "sample", "--json")
    assert code == 0, err
    return path, one_json(out)


@pytest.fixture(scope="module")
def trained(proj):
    path, _ = proj
    code, out, err = run_cli("train", path, *TRAIN, "--steps", "6", "--batch-size", "16", "--log-every", "2",
                             "--checkpoint-every", "3", "--json")
    assert code == 0, err
    return one_json(out), err


def test_init_and_dataset_add_and_list(proj, capsys):
    path, added = proj
    assert (path / "project.db").is_file()
    assert {k: added[k] for k in ("name", "images", "skipped", "classes")} == {"name": "sample", "images": 1797, "skipped": 0, "classes": 10}
    assert main(["dataset", "list", str(path), "--json"]) == 0
    listed = one_json(capsys.readouterr().out)["datasets"]
    assert [(d["name"], d["images"], d["classes"]) for d in listed] == [("sample", 1797, 10)]
    assert main(["init", str(path)]) == 1  # a project is there already
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "already holds a project" in err


def test_train_json_carries_the_fields_of_cli_md(proj, trained):
    path, _ = proj
    result, progress = trained
    assert {"run_id", "status", "steps", "epochs", "final_loss", "images_per_s", "checkpoint"} <= set(result)
    assert result["status"] == "finished" and result["steps"] == 6
    assert result["epochs"] == 0.05  # 6 steps of 112 per epoch: epochs as done, not whole ones
    assert isinstance(result["final_loss"], float) and 0 < result["final_loss"] < 10
    assert result["images_per_s"] > 0
    ck = result["checkpoint"]
    assert ck == f"runs/{result['run_id']}/last.ckpt" and not os.path.isabs(ck)
    assert (path / ck).is_file()
    lines = [line for line in progress.splitlines() if line.startswith("step ")]
    # A line per metrics window (--log-every 2; the checkpoint at step 3 closes a window early).
    marks = [line.split()[1] for line in lines]
    assert marks[0] == "2/6" and marks[-1] == "6/6" and 2 <= len(marks) <= 4
    assert all("loss " in line and "images/s" in line for line in lines)


def test_train_without_json_says_its_result_on_stdout_and_list_and_metrics_are_tables(proj, trained, capsys):
    path, _ = proj
    code, out, err = run_cli("train", path, *TRAIN, "--steps", "2", "--batch-size", "16")
    assert code == 0, err
    assert out.startswith(f"run ") and " finished at step 2, final loss " in out and "step 2/2" in err
    code, out, _ = run_cli("dataset", "list", path)
    header, row = out.splitlines()[:2]
    assert header.split() == ["name", "kind", "images", "classes", "skipped", "source"]
    assert row.split()[:3] == ["sample", "sample", "1,797"]
    code, out, _ = run_cli("metrics", path, trained[0]["run_id"])
    lines = out.splitlines()
    assert lines[0].split() == ["metric", "points", "first", "last", "at", "step", "min", "max"]
    assert len({line.index(line.split()[1]) + len(line.split()[1]) for line in lines}) == 1  # aligned
    code, _, err = run_cli("dataset", "add", path, "sample")
    assert code == 0 and "note: dataset 'sample' already reads these images" in err


def test_branch_continues_a_run_from_a_checkpoint_as_a_new_run_with_a_change(proj, trained):
    """--branch RUN@STEP: a new run from that checkpoint, with the settings given changed, trained
    to its end; the first run is left as it was; what cannot change is refused."""
    from studio.store import Project

    path, _ = proj
    first = trained[0]["run_id"]
    code, out, err = run_cli("train", path, "--branch", f"{first}@3", "--set", "temperature=0.2", "--lr", "0.01",
                             "--log-every", "1", "--json")
    assert code == 0, err
    result = one_json(out)
    assert result["status"] == "finished" and result["steps"] == 6
    assert f"continues run {first} from its checkpoint at step 3 with temperature 0.5 → 0.2, learning rate 0.00375 → 0.01" in err
    with Project.open(path) as p:
        new = p.run(result["run_id"])
        assert (new.parent_run_id, new.parent_step) == (first, 3)
        assert new.config["lr"] == 0.01 and new.config["method_config"]["temperature"] == 0.2
        lr = p.metric_series(new.id, ["lr"])
        assert lr.values["lr"][lr.steps["lr"].index(4)] == pytest.approx(0.005)  # 0.01 halfway down its cosine (the old rate gave 0.0019)
        assert p.run(first).status == "finished"
    code, _, err = run_cli("train", path, "--branch", f"{first}@3", "--batch-size", "8")
    assert code == 1 and "batch size cannot change" in err
    with pytest.raises(SystemExit) as usage:  # wrong usage: exit 2, with the reason
        run_cli("train", path, "--branch", str(first), "--suggested")
    assert usage.value.code == 2


def test_runs_json_lists_the_run_with_its_checkpoints(proj, trained, capsys):
    path, _ = proj
    result, _ = trained
    assert main(["runs", str(path), "--json"]) == 0
    runs = {r["id"]: r for r in one_json(capsys.readouterr().out)["runs"]}
    run = runs[result["run_id"]]
    assert {k: run[k] for k in ("method", "backbone", "dataset", "status", "steps")} == {
        "method": "simclr", "backbone": "resnet18", "dataset": "sample", "status": "finished", "steps": 6}
    rid = result["run_id"]
    assert run["checkpoints"] == [f"runs/{rid}/step-3.ckpt", f"runs/{rid}/last.ckpt"]
    assert all((path / c).is_file() for c in run["checkpoints"])
    assert main(["runs", str(path)]) == 0
    assert "finished" in capsys.readouterr().out


def test_metrics_json_and_csv(proj, trained, capsys):
    path, _ = proj
    rid = trained[0]["run_id"]
    assert main(["metrics", str(path), str(rid), "--json"]) == 0
    data = one_json(capsys.readouterr().out)
    assert data["run_id"] == rid
    series = data["series"]
    assert {"loss", "lr"} <= set(series)
    assert [p[0] for p in series["loss"]] == [1, 2, 3, 4, 5, 6]
    assert all(len(p) == 2 and isinstance(p[1], float) for p in series["loss"] + series["lr"])
    # final_loss is the mean of the last logged window (--log-every 2): the last two points.
    assert (series["loss"][-1][1] + series["loss"][-2][1]) / 2 == pytest.approx(trained[0]["final_loss"])

    assert main(["metrics", str(path), str(rid), "--csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    # Step 0 holds the monitors' check of the untrained encoder (the kNN baseline), no loss yet.
    assert [int(r["step"]) for r in rows] == [0, 1, 2, 3, 4, 5, 6]
    assert rows[0]["loss"] == "" and float(rows[0]["knn_top1"]) > 0
    rows = rows[1:]
    assert [float(r["loss"]) for r in rows] == pytest.approx([v for _, v in series["loss"]])
    assert [float(r["lr"]) for r in rows] == pytest.approx([v for _, v in series["lr"]])

    assert main(["metrics", str(path), "999", "--json"]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "no run 999" in captured.err


def test_methods_json_lists_simclr_with_its_fields(capsys):
    assert main(["methods", "--json"]) == 0
    methods = {m["name"]: m for m in one_json(capsys.readouterr().out)["methods"]}
    simclr = methods["simclr"]
    assert simclr["family"] == "contrastive" and simclr["summary"]
    fields = {f["name"]: f for f in simclr["fields"]}
    assert fields["temperature"]["default"] == 0.5 and fields["temperature"]["type"] == "float"
    assert fields["output_dim"]["default"] == 128 and fields["temperature"]["help"]
    assert main(["methods"]) == 0
    assert "--set temperature=0.5" in capsys.readouterr().out


def test_backbones_json(capsys):
    assert main(["backbones", "--json"]) == 0
    backbones = {b["name"]: b for b in one_json(capsys.readouterr().out)["backbones"]}
    assert (backbones["resnet18"]["feature_dim"], backbones["resnet18"]["kind"]) == (512, "cnn")
    assert backbones["vit_tiny"]["kind"] == "vit" and backbones["resnet18"]["description"]


@pytest.mark.parametrize("setting, words", [("nope=1", "no field 'nope'"), ("temperature=warm", "temperature must be a finite number")])
def test_a_bad_set_exits_1_with_one_line(proj, setting, words):
    path, _ = proj
    before = len(json.loads(run_cli("runs", path, "--json")[1])["runs"])
    code, out, err = run_cli("train", path, *TRAIN, "--steps", "2", "--set", setting, "--json")
    assert code == 1 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ") and words in err
    assert "Traceback" not in err
    assert len(json.loads(run_cli("runs", path, "--json")[1])["runs"]) == before  # nothing was queued


def test_errors_a_person_can_act_on_exit_1(proj, tmp_path):
    path, _ = proj
    code, _, err = run_cli("train", path, "--dataset", "shoes", "--method", "simclr", "--backbone", "resnet18", "--steps", "2")
    assert code == 1 and "no dataset 'shoes'" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli("train", path, "--dataset", "sample", "--method", "nope", "--backbone", "resnet18")
    assert code == 1 and "unknown method 'nope'" in err
    code, _, err = run_cli("runs", tmp_path / "nowhere")
    assert code == 1 and "not a project folder" in err and "Traceback" not in err


@pytest.mark.parametrize("argv", [
    ["train", "P", "--bogus"],
    ["train", "P", "--method", "simclr"],  # --dataset and --backbone missing
    ["train", "P", *TRAIN, "--steps", "2", "--epochs", "1"],
    ["train", "P", "--resume", "1", "--lr", "0.1"],
    ["metrics", "P", "x"],
    ["frobnicate"],
])
def test_wrong_usage_exits_2(proj, argv, capsys):
    path, _ = proj
    with pytest.raises(SystemExit) as exc:
        main([str(path) if a == "P" else a for a in argv])
    assert exc.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_version_in_a_real_process():
    proc = subprocess.run([sys.executable, "-m", "studio", "--version"], cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0
    from studio import __version__

    assert proc.stdout.strip() == f"ssl-studio {__version__}"


def test_ctrl_c_stops_a_real_run_and_resume_finishes_it(proj):
    path, _ = proj
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "studio", "train", str(path), *TRAIN, "--steps", "12", "--batch-size", "8",
         "--log-every", "1", "--json"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    progress = []
    try:
        for line in proc.stderr:
            progress.append(line)
            if line.startswith("step "):  # training is under way: press Ctrl-C
                proc.send_signal(signal.SIGINT)
                break
        out, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, "".join(progress) + err
    stopped = one_json(out)
    assert stopped["status"] == "stopped", stopped
    assert 1 <= stopped["steps"] < 12
    rid = stopped["run_id"]
    assert stopped["checkpoint"] == f"runs/{rid}/last.ckpt" and (path / stopped["checkpoint"]).is_file()
    assert "stopping after this step" in err

    code, out, err = run_cli("train", path, "--resume", rid, "--json")
    assert code == 0, err
    resumed = one_json(out)
    assert (resumed["run_id"], resumed["status"], resumed["steps"]) == (rid, "finished", 12)
    assert f"resuming simclr on resnet18 at step {stopped['steps']} of 12 (runs/{rid}/last.ckpt)" in err
    assert err.count("resum") == 1  # one line says it
    series = json.loads(run_cli("metrics", path, rid, "--json")[1])["series"]
    assert [s for s, _ in series["loss"]] == list(range(1, 13))  # each step once, none lost or repeated

    code, _, err = run_cli("train", path, "--resume", rid)
    assert code == 1 and "is finished" in err


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no SIGHUP on this system")
def test_a_closed_terminal_stops_the_run_with_a_checkpoint_like_sigterm():
    """SIGHUP (the terminal closed) and SIGTERM ask the run to stop between steps; the process
    lives on to write its checkpoint instead of dying with the steps since the last one."""
    from studio.cli.train import stop_on_signals
    from studio.engine.train import TrainingControl

    for sig in (signal.SIGHUP, signal.SIGTERM):
        control, before = TrainingControl(), signal.getsignal(sig)
        with stop_on_signals(control):
            os.kill(os.getpid(), sig)
            assert control.stop_requested, sig
        assert signal.getsignal(sig) == before  # the handler is the run's only while it trains


def test_gui_without_a_display_says_so_and_exits_1():
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    out = subprocess.run([sys.executable, "-m", "studio", "gui"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120)
    if not sys.platform.startswith("linux"):
        pytest.skip("the display check is for Linux desktops")
    assert out.returncode == 1, out.stderr
    assert out.stderr.startswith("error: no display found") and "xvfb-run" in out.stderr
