"""Run every benchmark under bench/ and print their JSON lines (one each); --quick shrinks them
to fit in a few minutes on 2 CPU cores."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES = ["overhead", "pipeline", "store", "gui_stall", "methods", "explorer"]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", nargs="*", default=None)
    args = ap.parse_args()
    failed = 0
    for name in args.only or BENCHES:
        script = HERE / f"{name}.py"
        if not script.is_file():
            continue
        t0 = time.perf_counter()
        cmd = [sys.executable, str(script)] + (["--quick"] if args.quick else [])
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=HERE)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if proc.returncode != 0 or not lines:
            failed += 1
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            print(json.dumps({"bench": name, "error": tail, "seconds": round(time.perf_counter() - t0, 1)}), flush=True)
            continue
        for ln in lines:
            print(ln, flush=True)
        print(f"# {name}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
