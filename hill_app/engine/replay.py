"""Exact replay: re-run a run's journal (same config, seed, commands and edits at the same steps) and
compare every logged metric. On the CPU the comparison is exact; a branched run replays its branches."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import torch

from .config import RunConfig
from .events import EventChannel
from .history import checkpoint_order, compare_metrics, effective_commands, epoch_metrics
from .journal import read_journal
from .progress import ProgressBar
from .session import TrainingSession


class ReplayError(Exception):
    pass


def replay_run(run_dir: str | Path, out_dir: str | Path | None = None, device: str = "cpu",
               events: EventChannel | None = None) -> tuple[dict[str, Any], list[str]]:
    """Replay ``run_dir`` into ``out_dir``; returns (the replay's summary, the differences found)."""
    run_dir = Path(run_dir)
    if not (run_dir / "journal.jsonl").is_file() or not (run_dir / "config.json").is_file():
        raise ReplayError(f"{run_dir}: not a run folder (needs config.json and journal.jsonl)")
    out = Path(out_dir) if out_dir else run_dir / "replay"
    if out.exists():
        shutil.rmtree(out)
    records = list(read_journal(run_dir / "journal.jsonl"))
    started = next((r for r in records if r.get("type") == "run_started"), {})
    if isinstance(started.get("threads"), int) and started["threads"] != torch.get_num_threads():
        # CPU kernels split work by thread count: the same count gives the same floating-point sums
        torch.set_num_threads(started["threads"])
    cfg = RunConfig.load(run_dir / "config.json")
    cfg.device = device
    session = TrainingSession(cfg, out, events=events)
    session.replaying = True
    session.schedule = effective_commands(records)
    original_ckpts = checkpoint_order(records)
    session.events.subscribe(lambda ev: _map_checkpoint(ev, session, original_ckpts))
    session.run()
    leftover = [f"command {c.command} at {c.branch} step {c.step} was never reached" for c in session.schedule]
    replayed = list(read_journal(out / "journal.jsonl"))
    diffs = leftover + compare_metrics(epoch_metrics(records), epoch_metrics(replayed))
    import json
    return json.loads((out / "summary.json").read_text()), diffs


def _map_checkpoint(ev: Any, session: TrainingSession, original: list[str]) -> None:
    """The n-th checkpoint of the replay stands for the n-th of the original (for load_checkpoint)."""
    if ev.kind == "checkpoint":
        n = len(session.translate_uuid)
        if n < len(original):
            session.translate_uuid[original[n]] = ev.data["uuid"]


def replay_main(a: Any) -> int:
    events = EventChannel()
    cfg = RunConfig.load(Path(a.run_dir) / "config.json") if (Path(a.run_dir) / "config.json").is_file() else None
    if cfg is not None:
        events.subscribe(ProgressBar(cfg.epochs))
    try:
        summary, diffs = replay_run(a.run_dir, a.out, device=a.device, events=events)
    except ReplayError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    original = epoch_metrics(read_journal(Path(a.run_dir) / "journal.jsonl"))
    n_fields = sum(len(v) for v in original.values())
    if diffs:
        print(f"replay DIFFERS from the original in {len(diffs)} place(s):")
        for d in diffs[:50]:
            print("  " + d)
        return 1
    print(f"replay identical: {len(original)} epoch records, {n_fields} logged values compared exactly "
          f"(test accuracy {summary['test_accuracy']:.4f})")
    return 0
