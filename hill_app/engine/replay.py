"""Exact replay: re-run a run's journal (same config, seed, commands and edits at the same steps) and
compare every logged metric. On the CPU the comparison is exact; a branched run replays its branches."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch

from .config import RunConfig
from .events import EventChannel
from .history import checkpoint_order, compare_metrics, effective_commands, epoch_metrics
from .journal import read_journal
from .progress import ProgressBar
from .session import ResumeFailed, TrainingSession


class ReplayError(Exception):
    pass


def replay_run(
    run_dir: str | Path, out_dir: str | Path | None = None, device: str = "cpu", events: EventChannel | None = None
) -> tuple[dict[str, Any], list[str]]:
    """Replay ``run_dir`` into ``out_dir``; returns (the replay's summary, the differences found)."""
    run_dir = Path(run_dir)
    if not (run_dir / "journal.jsonl").is_file() or not (run_dir / "config.json").is_file():
        raise ReplayError(f"{run_dir}: not a run folder (needs config.json and journal.jsonl)")
    out = replay_folder(run_dir, out_dir)
    records = list(read_journal(run_dir / "journal.jsonl"))
    started = next((r for r in records if r.get("type") == "run_started"), {})
    if isinstance(started.get("threads"), int) and started["threads"] != torch.get_num_threads():
        # CPU kernels split work by thread count: the same count gives the same floating-point sums
        torch.set_num_threads(started["threads"])
    cfg = RunConfig.load(run_dir / "config.json")
    cfg.device = device
    kernel = started.get("hill_cpu_kernel") if device == "cpu" else None
    session = TrainingSession(cfg, out, events=events, cpu_kernel=kernel if isinstance(kernel, str) else None)
    session.replaying = True
    session.source_dir = run_dir  # files the run added are read from its own copies
    session.schedule = effective_commands(records)
    original_ckpts = checkpoint_order(records)
    session.events.subscribe(lambda ev: _map_checkpoint(ev, session, original_ckpts))
    session.run()
    leftover = [f"command {c.command} at {c.branch} step {c.step} was never reached" for c in session.schedule]
    replayed = list(read_journal(out / "journal.jsonl"))
    diffs = leftover + compare_metrics(epoch_metrics(records), epoch_metrics(replayed))
    import json

    return json.loads((out / "summary.json").read_text()), diffs


def replay_folder(run_dir: Path, out_dir: str | Path | None) -> Path:
    """Where a replay goes. It never deletes anything: an explicit ``out_dir`` must be new or empty; the default
    is ``RUN/replay``, or ``RUN/replay-2``, ``-3`` ... when an earlier replay is there."""
    if out_dir is None:
        base = run_dir / "replay"
        out, i = base, 2
        while out.exists() and not _empty_dir(out):
            out, i = base.with_name(f"replay-{i}"), i + 1
        return out
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ReplayError(f"{out}: --out is a file; expected a new or empty folder for the replay")
    if out.exists() and not _empty_dir(out):
        raise ReplayError(
            f"{out}: --out is not empty; a replay writes only into a new or empty folder "
            f"(nothing is deleted; leave out --out for {run_dir / 'replay'} or a fresh replay-N)"
        )
    r_out, r_run = out.resolve(), run_dir.resolve()
    if r_out == r_run or r_out in r_run.parents:
        raise ReplayError(f"{out}: --out would hold the run being replayed; choose a new folder")
    return out


def _empty_dir(p: Path) -> bool:
    return p.is_dir() and not any(p.iterdir())


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
    except ResumeFailed as e:
        print(f"error: the replay cannot follow the original: {e}", file=sys.stderr)
        return 1
    original = epoch_metrics(read_journal(Path(a.run_dir) / "journal.jsonl"))
    n_fields = sum(len(v) for v in original.values())
    if diffs:
        print(f"replay DIFFERS from the original in {len(diffs)} place(s):")
        for d in diffs[:50]:
            print("  " + d)
        return 1
    print(
        f"replay identical: {len(original)} epoch records, {n_fields} logged values compared exactly "
        f"(test accuracy {summary['test_accuracy']:.4f})"
    )
    return 0
