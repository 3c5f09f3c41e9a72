"""How quickly hill-app starts: `hill-app train` on the 40-epoch digits protocol with edits, and the window.

    python bench/startup.py                 # 2 train runs and 3 window starts (~1 min on 2 cores)
    python bench/startup.py --runs 1 --no-window

For `hill-app train --device cpu --edits bench/digits_protocol_edits.json` (pauses 25/30/35/40, the
published protocol) it prints the wall time, the time to the first epoch (process start to the journal's
run_started record, written just before epoch 1 begins) and the session's own time; then what the
process imports before training, by package (``python -X importtime``); then the time from starting
`hill-app` (no arguments, the window; QT_QPA_PLATFORM=offscreen unless set) to its first turn of the event
loop with the main window shown. Targets: the protocol under 10 s wall on 2 cores, the window within 3 s.
The machine's load average is printed with each figure: other processes on shared cores lengthen walls.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
EDITS = HERE / "digits_protocol_edits.json"
TRAIN_TARGET_S = 10.0
WINDOW_TARGET_S = 3.0

WINDOW_PROBE = r"""
import sys, time
t_launch = float(sys.argv[1])
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication
_exec = QApplication.exec
def _probe(*args):
    app = QApplication.instance()
    def first_turn():
        print("INTERACTIVE", time.time() - t_launch, flush=True)
        app.quit()
    QTimer.singleShot(0, first_turn)
    return _exec()
QApplication.exec = _probe
from hill_app.cli import main
sys.exit(main([]))
"""


PYTHONPATH: str | None = None  # --pythonpath: time another copy of the package (say, an older commit)


def hill_app_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("hill-app")
    return [str(exe)] if exe.exists() and PYTHONPATH is None else [sys.executable, "-m", "hill_app.cli"]


def env() -> dict[str, str]:
    e = dict(os.environ)
    if PYTHONPATH is not None:
        e["PYTHONPATH"] = PYTHONPATH
    return e


def train_once(out: Path) -> dict[str, float]:
    t0 = time.time()
    p = subprocess.run(
        hill_app_cmd() + ["train", "--device", "cpu", "--edits", str(EDITS), "--out", str(out)],
        capture_output=True,
        text=True,
        env=env(),
        cwd=out.parent,
    )
    wall = time.time() - t0
    if p.returncode != 0:
        raise SystemExit(f"hill-app train failed ({p.returncode}):\n{p.stderr[-2000:]}")
    recs = [json.loads(line) for line in (out / "journal.jsonl").read_text().splitlines()]
    started = next(r["time"] for r in recs if r["type"] == "run_started")
    finished = next(r["time"] for r in recs if r["type"] == "finished")
    epochs = [r for r in recs if r["type"] == "epoch"]
    return {
        "wall": wall,
        "to_first_epoch": started - t0,
        "session": finished - started,
        "training": sum(r["epoch_seconds"] for r in epochs),
        "epoch1": epochs[0]["epoch_seconds"],
        "load": os.getloadavg()[0],
    }


HEAVY = ("torch", "torch._dynamo", "sklearn", "scipy", "h5py", "numpy", "PySide6", "pyqtgraph")


def imports() -> list[tuple[str, float]]:
    code = (
        "import hill_app.cli, hill_app.engine.session, hill_app.engine.edits_file, hill_app.engine.progress, "
        "hill_app.datasets; from hill_app.datasets import load_dataset; load_dataset('digits'); "
        "import torch; from hill_app.engine.optimizers import SGD; SGD([torch.zeros(1, requires_grad=True)], lr=0.1)"
    )
    p = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        capture_output=True,
        text=True,
        env=env(),
        cwd=tempfile.gettempdir(),
    )
    found: dict[str, float] = {}
    total = 0.0
    for line in p.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if m:
            total += int(m.group(1)) / 1e6
            if m.group(4) in HEAVY:  # cumulative: the package with everything it imported first
                found[m.group(4)] = int(m.group(2)) / 1e6
    return [("all imports", total)] + sorted(found.items(), key=lambda kv: -kv[1])


def window_once() -> float | str:
    e = env()
    e.setdefault("QT_QPA_PLATFORM", "offscreen")
    t0 = time.time()
    p = subprocess.run(
        [sys.executable, "-c", WINDOW_PROBE, repr(t0)],
        capture_output=True,
        text=True,
        env=e,
        timeout=120,
        cwd=tempfile.gettempdir(),
    )
    m = re.search(r"INTERACTIVE ([0-9.]+)", p.stdout)
    if not m:
        return f"the window did not start (exit {p.returncode}): {p.stderr.strip().splitlines()[-1:]}"
    return float(m.group(1))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=2, help="train runs (default 2)")
    ap.add_argument("--windows", type=int, default=3, help="window starts (default 3)")
    ap.add_argument("--no-window", action="store_true")
    ap.add_argument("--pythonpath", help="import hill_app from this folder instead (a before/after comparison)")
    a = ap.parse_args(argv)
    global PYTHONPATH
    PYTHONPATH = a.pythonpath
    tmp = Path(tempfile.mkdtemp(prefix="hill-startup-"))
    runs = [train_once(tmp / f"run{i}") for i in range(a.runs)]
    print("hill-app train --device cpu, digits, 40 epochs, pauses 25/30/35/40 with edits:")
    for r in runs:
        print(
            f"  wall {r['wall']:5.1f} s | to first epoch {r['to_first_epoch']:4.1f} s | "
            f"session {r['session']:5.1f} s "
            f"(training {r['training']:4.1f} s, epoch 1 {r['epoch1']:.2f} s) | load {r['load']:.2f}"
        )
    print("imported before training (python -X importtime; each package with what it pulled in first), s:")
    print("  " + ", ".join(f"{n} {s:.2f}" for n, s in imports()))
    lines = []
    med = statistics.median(r["wall"] for r in runs)
    first = statistics.median(r["to_first_epoch"] for r in runs)
    lines.append(
        f"train: wall {med:.1f} s (target < {TRAIN_TARGET_S:.0f}: "
        f"{'ok' if med < TRAIN_TARGET_S else 'MISSED'}), time to first epoch {first:.1f} s"
    )
    if not a.no_window:
        ws = [window_once() for _ in range(a.windows)]
        if any(isinstance(x, str) for x in ws):
            print(next(x for x in ws if isinstance(x, str)))
            lines.append("window: FAILED to start")
        else:
            w = statistics.median(ws)
            print(
                "window (hill-app, no arguments) to its first event-loop turn: " + ", ".join(f"{x:.2f} s" for x in ws)
            )
            lines.append(
                f"window: {w:.2f} s (target < {WINDOW_TARGET_S:.0f}: {'ok' if w < WINDOW_TARGET_S else 'MISSED'})"
            )
    print("\nsummary: " + "; ".join(lines) + f"; load average {os.getloadavg()[0]:.2f}")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
