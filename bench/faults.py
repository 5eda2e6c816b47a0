"""Faults against a throw-away project (issue 20): each one done for real, its outcome checked.

    python bench/faults.py [--json] [--kills N] [--only NAME]

Prints a table fault -> expected -> seen (and, with --json, one JSON line as the other benches
do). Every fault runs through the `ssl-studio` command line in child processes, except the full
disk, which is injected under torch.save in this process (no small file system to fill here).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

TRAIN = ["--method", "simclr", "--backbone", "resnet18", "--batch-size", "8", "--image-size", "16", "--device", "cpu"]


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "studio", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=env)


def cli_start(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "studio", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)


def last_error(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.startswith("error:")]
    return (lines[-1] if lines else text.strip().splitlines()[-1] if text.strip() else "")[:110]


def integrity(db: Path) -> str:
    with contextlib.closing(sqlite3.connect(str(db))) as c:
        return c.execute("PRAGMA integrity_check").fetchone()[0]


def new_project(base: Path, name: str, steps: int = 0, every: int = 0) -> Path:
    proj = base / name
    assert cli("init", proj).returncode == 0
    assert cli("dataset", "add", proj, "sample").returncode == 0
    if steps:
        r = cli("train", proj, "--dataset", "sample", *TRAIN, "--steps", steps, "--checkpoint-every", every, "--json")
        assert r.returncode == 0, r.stderr
    return proj


# -- the faults ------------------------------------------------------------------------------------
def export_over_database(base: Path) -> tuple[str, str, bool]:
    proj = new_project(base, "export", steps=4, every=2)
    before = (proj / "project.db").read_bytes()
    r = cli("export", proj, "1", "--format", "torchscript", "--out", proj / "project.db", "--force")
    r2 = cli("export", proj, "1", "--format", "torchvision", "--out", proj / "runs" / "1" / "last.ckpt", "--force")
    kept = (proj / "project.db").read_bytes() == before and integrity(proj / "project.db") == "ok"
    ok = r.returncode == 1 and r2.returncode == 1 and kept and cli("runs", proj).returncode == 0
    return "exit 1 twice, project.db and last.ckpt kept", f"exit {r.returncode}/{r2.returncode}, kept={kept}: " \
        f"{last_error(r.stderr)[:60]}", ok


def disk_full_during_checkpoint(base: Path) -> tuple[str, str, bool]:
    import studio.engine.train.checkpoint as ckpt
    from studio.cli import main
    from studio.store import Project

    proj = new_project(base, "full")

    class FullFile(io.FileIO):  # the disk fills after 64 KB: torch.save meets ENOSPC itself
        def write(self, b):
            if self.tell() + len(b) > 64_000:
                raise OSError(errno.ENOSPC, "No space left on device")
            return super().write(b)

    real_open = open
    ckpt.open = lambda path, mode="r", *a, **k: FullFile(path, "wb") if "w" in mode else real_open(path, mode, *a, **k)
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["train", str(proj), "--dataset", "sample", *TRAIN, "--steps", "4", "--checkpoint-every", "2",
                         "--json"])
    finally:
        del ckpt.open
    payload = json.loads(out.getvalue() or "{}")
    with Project.open(proj) as p:
        run = p.runs()[0]
    leftovers = [f.name for f in (proj / "runs").rglob("*") if ".tmp-" in f.name]
    ok = (code == 1 and payload.get("status") == "failed" and run.status == "failed"
          and "disk is full" in (run.reason or "") and not leftovers)
    return ("exit 1, JSON printed, run failed 'the disk is full', no temp file",
            f"exit {code}, json status={payload.get('status')}, run {run.status}: {(run.reason or '')[:40]}..., "
            f"temp files {len(leftovers)}", ok)


def two_resumes_at_once(base: Path) -> tuple[str, str, bool]:
    from studio.store import Project

    proj = new_project(base, "twice", steps=40, every=10)
    (proj / "runs" / "1" / "last.ckpt").unlink()
    with Project.open(proj) as p:  # as if stopped at step 20 (its newest checkpoint)
        for ck in p.checkpoints(1):
            if ck.step > 20:
                (proj / ck.path).unlink(missing_ok=True)
        p.set_run_status(1, "stopped", "stopped by the user", steps=20)
    a = cli_start("train", proj, "--resume", "1", "--json")
    b = cli_start("train", proj, "--resume", "1", "--json")
    results = [(p.wait(timeout=300), p.stderr.read()) for p in (a, b)]
    codes = sorted(code for code, _ in results)
    refused = [err for code, err in results if code != 0]
    with Project.open(proj) as p:
        steps = p.metric_series(1, names=["loss"]).steps.get("loss", [])
        run = p.run(1)
    dupes = len(steps) - len(set(steps))
    ok = codes == [0, 1] and dupes == 0 and run.status == "finished" and len(set(steps)) == 40 and \
        "being trained by another process" in (refused[0] if refused else "")
    return ("one trains to the end, the other exits 1 'being trained by another process', 0 duplicate points",
            f"exits {codes}, run {run.status}, {len(set(steps))} steps, {dupes} duplicates: "
            f"{last_error(refused[0])[7:60] if refused else '-'}", ok)


def foreign_database(base: Path) -> tuple[str, str, bool]:
    proj = base / "foreign"
    proj.mkdir()
    with contextlib.closing(sqlite3.connect(str(proj / "project.db"))) as c:
        c.execute("CREATE TABLE recipes (id INTEGER PRIMARY KEY, name TEXT)")
        c.commit()
    before = (proj / "project.db").read_bytes()
    r = cli("runs", proj)
    untouched = (proj / "project.db").read_bytes() == before and sorted(os.listdir(proj)) == ["project.db"]
    ok = r.returncode == 1 and untouched and "not an SSL Studio project" in r.stderr
    return "exit 1 'not an SSL Studio project', file untouched", f"exit {r.returncode}, untouched={untouched}: " \
        f"{last_error(r.stderr)[-50:]}", ok


def empty_database(base: Path) -> tuple[str, str, bool]:
    proj = base / "empty"
    proj.mkdir()
    (proj / "project.db").write_bytes(b"")
    r = cli("runs", proj)
    ok = r.returncode == 1 and "empty" in r.stderr and (proj / "project.db").stat().st_size == 0
    return "exit 1 'is empty', not adopted", f"exit {r.returncode}, size {(proj / 'project.db').stat().st_size}: " \
        f"{last_error(r.stderr)[-60:]}", ok


def truncated_database(base: Path) -> tuple[str, str, bool]:
    proj = new_project(base, "garbled", steps=30, every=0)
    db = proj / "project.db"
    with contextlib.closing(sqlite3.connect(str(db))) as c:
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = db.stat().st_size
    with open(db, "r+b") as f:  # 16 KB of garbage mid-file (as in the issue)
        f.seek(size // 2)
        f.write(os.urandom(16384))
    r = cli("runs", proj)
    fixed = cli("repair", proj, "--json")
    after = cli("runs", proj, "--json")
    runs = json.loads(after.stdout)["runs"] if after.returncode == 0 else None
    ok = r.returncode == 1 and "damaged" in r.stderr and "ssl-studio repair" in r.stderr and fixed.returncode == 0 \
        and runs is not None
    rows = json.loads(fixed.stdout)["rows"] if fixed.returncode == 0 else {}
    return ("exit 1 'damaged ... ssl-studio repair'; repair exits 0 and the project opens",
            f"exit {r.returncode}; repair exit {fixed.returncode} ({rows.get('metric_points', 0)} points kept); "
            f"runs exit {after.returncode}, {len(runs or [])} run(s)", ok)


def symlink_loop(base: Path) -> tuple[str, str, bool]:
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import write_image_folder

    folder = write_image_folder(base / "images", per_class=4)
    (folder / "self").symlink_to(".")
    (folder / "cats" / "a.png").symlink_to("b.png")
    (folder / "cats" / "b.png").symlink_to("a.png")
    os.mkfifo(folder / "dogs" / "pipe.png")
    proj = new_project(base, "links")
    started = time.time()
    r = cli("dataset", "add", proj, folder, "--name", "imgs", "--json", timeout=120)
    took = time.time() - started
    d = json.loads(r.stdout) if r.returncode == 0 else {}
    reasons = sorted({s["reason"].split(",")[0].replace("skipped: ", "") for s in d.get("skipped_files", [])})
    ok = r.returncode == 0 and d.get("images") == 8 and d.get("classes") == 2 and d.get("skipped") == 4
    return ("8 images, 2 classes; self, the loop's 2 links and the FIFO skipped with reasons; no hang",
            f"{d.get('images')} images, {d.get('classes')} classes, {d.get('skipped')} skipped ({'; '.join(reasons)}) "
            f"in {took:.1f} s", ok)


def stale_temp_checkpoint(base: Path) -> tuple[str, str, bool]:
    proj = new_project(base, "stale", steps=2, every=0)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    tmp = proj / "runs" / "1" / f".step-2.ckpt.tmp-{dead.pid}"
    tmp.write_bytes(os.urandom(1 << 20))
    r = cli("runs", proj)
    ok = r.returncode == 0 and not tmp.exists()
    return "removed on the next open", f"exit {r.returncode}, left={tmp.exists()}", ok


KILLS = 10  # --kills N


def kill_soak(base: Path, kills: int | None = None) -> tuple[str, str, bool]:
    """N random SIGKILLs and SIGHUPs while a run trains and writes checkpoints (every few tenths
    of a second), one resumed at once by two trainers, then resumed to the end: every step drawn
    once, no point lost or doubled, no temporary file left, the database whole."""
    import random
    import signal

    from studio.store import Project

    kills = KILLS if kills is None else kills
    steps = 120
    proj = new_project(base, "soak")
    rng = random.Random(0)
    sent = {"SIGKILL": 0, "SIGHUP": 0}
    started = cli_start("train", proj, "--dataset", "sample", *TRAIN, "--steps", steps, "--checkpoint-minutes", "0.005",
                        "--log-every", "1", "--json")
    procs = [started]
    for i in range(kills):
        time.sleep(rng.uniform(2.0, 6.0))
        sig = rng.choice([signal.SIGKILL, signal.SIGHUP]) if hasattr(signal, "SIGHUP") else signal.SIGKILL
        for p in procs:
            if p.poll() is None:
                p.send_signal(sig)
                sent[sig.name] += 1
        for p in procs:
            p.wait(timeout=120)
        # resume; every third time by two trainers at once (one must be refused)
        procs = [cli_start("train", proj, "--resume", "1", "--json") for _ in range(2 if i % 3 == 2 else 1)]
    for p in procs:
        p.wait(timeout=900)
    for _ in range(3):  # the last kill may have left it stopped or interrupted: resume to the end
        with Project.open(proj) as p:
            if p.run(1).status == "finished":
                break
        cli("train", proj, "--resume", "1", "--json", timeout=900)
    with Project.open(proj) as p:
        run = p.run(1)
        drawn = p.metric_series(1, names=["loss"]).steps.get("loss", [])
    dupes = len(drawn) - len(set(drawn))
    lost = steps - len(set(drawn))
    temps = [f.name for f in (proj / "runs").rglob("*.tmp*")]
    whole = integrity(proj / "project.db")
    ok = run.status == "finished" and lost == 0 and dupes == 0 and not temps and whole == "ok"
    return (f"{kills} kills (SIGKILL/SIGHUP) during training and checkpoints, 2 resumers every third time: "
            "finished, 0 points lost or doubled, 0 temp files, database ok",
            f"{sent['SIGKILL']} SIGKILL + {sent['SIGHUP']} SIGHUP sent; run {run.status} at {run.steps}/{steps}; "
            f"{lost} lost, {dupes} duplicate points; {len(temps)} temp files; integrity {whole}", ok)


FAULTS = {
    "export over project.db / last.ckpt": export_over_database,
    "disk full during a checkpoint": disk_full_during_checkpoint,
    "two resumes at once": two_resumes_at_once,
    "foreign SQLite file as project.db": foreign_database,
    "empty project.db": empty_database,
    "16 KB of garbage mid project.db": truncated_database,
    "symlink loop, self link, FIFO": symlink_loop,
    "temp checkpoint of a killed writer": stale_temp_checkpoint,
    "random kills and resumes (soak)": kill_soak,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="also print one JSON line")
    parser.add_argument("--only", help="run only the faults whose name contains this")
    parser.add_argument("--kills", type=int, default=KILLS, help="signals sent in the soak (default %(default)s)")
    args = parser.parse_args()
    globals()["KILLS"] = args.kills
    rows = []
    with tempfile.TemporaryDirectory(prefix="ssl-faults-") as tmp:
        for name, fault in FAULTS.items():
            if args.only and args.only not in name:
                continue
            base = Path(tmp) / fault.__name__
            base.mkdir()
            started = time.time()
            try:
                expected, seen, ok = fault(base)
            except Exception as exc:  # noqa: BLE001 - a fault that breaks the bench is a finding too
                expected, seen, ok = "-", f"bench error: {exc.__class__.__name__}: {exc}"[:120], False
            rows.append({"fault": name, "expected": expected, "seen": seen, "ok": ok,
                         "seconds": round(time.time() - started, 1)})
            shutil.rmtree(base, ignore_errors=True)
    width = max(len(r["fault"]) for r in rows)
    print(f"{'fault':<{width}}  ok    expected -> seen")
    for r in rows:
        print(f"{r['fault']:<{width}}  {'yes' if r['ok'] else 'NO ':<4}  {r['expected']}\n{'':<{width}}        -> {r['seen']}")
    print(f"{sum(r['ok'] for r in rows)}/{len(rows)} faults handled as expected")
    if args.json:
        print(json.dumps({"bench": "faults", "faults": rows}))
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
