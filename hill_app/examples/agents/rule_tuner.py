"""A rule-based tuner for a served run: halve the learning rate when validation loss stops improving, and on a
loss spike pause, save a checkpoint, halve the learning rate and resume (or hold the pause for a human).

    python -m hill_app.examples.agents.rule_tuner RUN_DIR|URL [--name rules] [--spike 3] [--min-improvement 0]

It uses only the public client API; every command it sends is journaled with source ``agent:NAME``.
"""

from __future__ import annotations

import argparse
import collections
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hill_app.client.remote import RemoteError, RemoteRunClient


@dataclass
class RuleTuner:
    client: Any  # a RunClient
    spike_factor: float = 3.0  # a step loss this many times the recent median is a spike
    window: int = 20  # recent step losses kept for the median
    min_improvement: float = 0.0  # validation loss must fall by this fraction, else the lr is halved
    min_lr: float = 1e-6
    hold_on_spike: bool = False  # leave the run paused after a spike (a human decides)
    resume_pauses: bool = False  # resume scheduled pauses (a headless served run has nobody else)
    log: Callable[[str], None] = print
    epochs_total: int | None = None  # no lr change after the last epoch (nothing left to train)
    lr: float | None = None
    best_val: float | None = None
    actions: list[dict[str, Any]] = field(default_factory=list)
    finished: bool = False
    _recent: collections.deque = field(default_factory=lambda: collections.deque(maxlen=20))
    _cooldown: int = 0
    _mine: dict[str, str] = field(default_factory=dict)  # uuid -> command, to report outcomes

    def __post_init__(self) -> None:
        self._recent = collections.deque(maxlen=self.window)

    def handle(self, kind: str, data: dict[str, Any]) -> None:
        if kind == "step":
            self._step(data)
        elif kind == "epoch":
            self._epoch(data)
        elif kind == "paused" and self.resume_pauses and str(data.get("reason", "")).startswith("scheduled"):
            self._send("resume_training", {}, why=f"resume the scheduled pause before epoch {data.get('epoch')}")
        elif kind == "command" and data.get("uuid") in self._mine and data.get("status") in ("success", "failed"):
            name = self._mine.pop(data["uuid"])
            if data["status"] == "failed":
                self.log(f"{name} failed: {data.get('reason')}")
        elif kind in ("finished", "error"):  # the run ended (or its training thread failed)
            self.finished = True

    def _step(self, d: dict[str, Any]) -> None:
        if isinstance(d.get("lr"), (int, float)):
            self.lr = float(d["lr"])
        loss = d.get("loss")
        if not isinstance(loss, (int, float)):  # non-finite: the run has paused itself; a human must step in
            return
        if self._cooldown > 0:
            self._cooldown -= 1
        elif len(self._recent) >= max(3, self.window // 2):
            median = statistics.median(self._recent)
            if loss > self.spike_factor * median:
                self._spike(loss, median, d.get("step"))
                return
        self._recent.append(float(loss))

    def _epoch(self, d: dict[str, Any]) -> None:
        if isinstance(d.get("lr"), (int, float)):
            self.lr = float(d["lr"])
        val = d.get("val_loss")
        if not isinstance(val, (int, float)) or (self.epochs_total and d.get("epoch", 0) >= self.epochs_total):
            return
        if self.best_val is not None and val > self.best_val * (1.0 - self.min_improvement):
            self._halve(
                f"validation loss {val:.4f} did not improve on {self.best_val:.4f} "
                f"by {self.min_improvement:.0%} (epoch {d.get('epoch')})"
            )
        if self.best_val is None or val < self.best_val:
            self.best_val = float(val)

    def _spike(self, loss: float, median: float, step: Any) -> None:
        why = f"loss {loss:.4f} at step {step} is {loss / median:.1f}x the recent median {median:.4f}"
        self._send("pause_training", {"reason": f"rule tuner: {why}"}, why=why)
        self._send("save_checkpoint", {"note": f"loss spike at step {step}"}, why="keep the state before the spike")
        self._halve(why)
        if not self.hold_on_spike:
            self._send("resume_training", {}, why="continue with the lower learning rate")
        self._recent.clear()
        self._cooldown = self.window

    def _halve(self, why: str) -> None:
        if self.lr is None:
            return
        new = max(self.lr / 2.0, self.min_lr)
        if new >= self.lr:
            self.log(f"lr is at its floor {self.min_lr:g}; not lowered ({why})")
            return
        self._send("update_optimizer", {"lr": new}, why=why)
        self.lr = new

    def _send(self, command: str, args: dict[str, Any], why: str) -> None:
        uid = self.client.submit(command, args)
        self._mine[uid] = command
        self.actions.append({"command": command, "args": args, "why": why, "uuid": uid})
        self.log(f"{command} {args or ''}: {why}")


def run(tuner: RuleTuner, poll: float = 0.05, stop: Callable[[], bool] | None = None) -> None:
    """Feed the tuner the client's events until the run finishes (or ``stop()`` says so)."""
    if tuner.epochs_total is None:
        tuner.epochs_total = int(tuner.client.info()["config"]["epochs"])
    while not tuner.finished and not (stop is not None and stop()):
        for kind, data in tuner.client.poll_events():
            tuner.handle(kind, data)
        time.sleep(poll)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="rule_tuner", description=__doc__.split("\n\n")[0])
    p.add_argument("target", help="the served run: its folder (control.json) or its URL")
    p.add_argument("--name", default="rule-tuner", help="recorded as source agent:NAME")
    p.add_argument("--token", help="for a URL (default: $HILL_APP_TOKEN or ~/.netrc)")
    p.add_argument("--spike", type=float, default=3.0, help="spike = step loss > SPIKE x recent median")
    p.add_argument(
        "--min-improvement",
        type=float,
        default=0.0,
        help="halve the lr unless validation loss falls by this fraction (default 0: any rise)",
    )
    p.add_argument("--window", type=int, default=20, help="recent step losses the median is taken over")
    p.add_argument("--hold", action="store_true", help="stay paused after a spike")
    p.add_argument("--resume-pauses", action="store_true", help="resume scheduled pauses")
    a = p.parse_args(argv)
    try:
        client = RemoteRunClient(a.target, token=a.token, source=f"agent:{a.name}")
    except RemoteError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    tuner = RuleTuner(
        client,
        spike_factor=a.spike,
        window=a.window,
        min_improvement=a.min_improvement,
        hold_on_spike=a.hold,
        resume_pauses=a.resume_pauses,
        log=lambda m: print(f"[{a.name}] {m}", flush=True),
    )
    try:
        run(tuner)
    except KeyboardInterrupt:
        pass
    finally:
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
