"""Issue 20: nothing a person does, and nothing the machine does, loses their work.

Each test here fails on the code before the fix and passes after it.
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import tiny_train_config

ROOT = Path(__file__).resolve().parent.parent


def _cli(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "studio", *args], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT, env=env)


def _run_cli(*argv: str) -> tuple[int, str, str]:
    import contextlib
    import io

    from studio.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A project with one finished 4-step run that kept a checkpoint at step 2 and last.ckpt."""
    from studio.services.datasets import add_dataset
    from studio.services.training import create_run, execute_run
    from studio.store import Project

    root = tmp_path_factory.mktemp("faults")
    project = Project.create(root / "proj")
    add_dataset(project, "sample", name="sample")
    run = create_run(project, "sample", tiny_train_config(steps=4, batch_size=8, checkpoint_every=2, monitor_every=-1))
    assert execute_run(project, run.id).status == "finished"
    project.close()
    return root / "proj", run.id


# -- 1. exports never write over the project's files ----------------------------------------------
@pytest.mark.parametrize("target", ["project.db", "runs/{run}/last.ckpt", "cache"])
def test_export_never_writes_over_the_projects_own_files(trained, target):
    proj, run_id = trained
    out = proj / target.format(run=run_id)
    before = out.read_bytes() if out.is_file() else None
    code, stdout, err = _run_cli("export", str(proj), str(run_id), "--format", "torchvision", "--out", str(out),
                                 "--force", "--json")
    assert code == 1, err
    assert "project's own files" in err and stdout == ""
    if before is not None:
        assert out.read_bytes() == before
    assert sqlite3.connect(str(proj / "project.db")).execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_export_over_an_existing_file_needs_force(trained, tmp_path):
    proj, run_id = trained
    out = tmp_path / "enc.pth"
    out.write_bytes(b"mine")
    code, _, err = _run_cli("export", str(proj), str(run_id), "--format", "torchvision", "--out", str(out))
    assert code == 1 and "--force" in err
    assert out.read_bytes() == b"mine"
    code, stdout, err = _run_cli("export", str(proj), str(run_id), "--format", "torchvision", "--out", str(out),
                                 "--force", "--json")
    assert code == 0, err
    assert out.read_bytes() != b"mine"
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_existing_outputs_lists_what_an_export_would_replace(trained, tmp_path):
    from studio.engine.export import ExportError
    from studio.services.export import existing_outputs
    from studio.store import Project

    proj, run_id = trained
    (tmp_path / "enc.pth").write_bytes(b"x")
    with Project.open(proj) as project:
        assert existing_outputs(project, run_id, "torchvision", tmp_path / "enc.pth") == [tmp_path / "enc.pth"]
        assert existing_outputs(project, run_id, "torchvision", tmp_path / "other.pth") == []
        with pytest.raises(ExportError):
            existing_outputs(project, run_id, "torchvision", proj / "project.db")
