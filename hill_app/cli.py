"""`hill-app`: no arguments opens the window; subcommands run headless (train, replay, study, report)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

EXIT_USAGE = 2


def _int_list(text: str) -> list[int]:
    if text.strip() in ("", "none"):
        return []
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated epochs such as 25,30,35,40, got {text!r}")


def add_run_options(p: argparse.ArgumentParser) -> None:
    from hill_app.engine.config import DATASETS
    p.add_argument("--dataset", choices=DATASETS, default="digits")
    p.add_argument("--data-root", help="data folder (CIFAR-10: cifar-10-batches-py or the archive; PAMAP2: Protocol/)")
    p.add_argument("--download", action="store_true", help="CIFAR-10: download (MD5-checked) if not on disk")
    p.add_argument("--model", help="digits_cnn, airbench, resnet18, pamap_cnn1d (default: per data set)")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--pause-at", type=_int_list, default=[25, 30, 35, 40],
                   help="epochs to pause before, comma-separated (default 25,30,35,40; 'none' for no pauses)")
    p.add_argument("--alpha", type=float, default=0.5)
    p.add_argument("--lam", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto (CUDA where there is one), cpu, cuda, cuda:N")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--optimizer", choices=["sgd", "adam", "adamw"])
    p.add_argument("--projection", choices=["pca", "lda"], default="pca")
    p.add_argument("--view-size", type=int, help="points in the latent view (0: the whole training split)")
    p.add_argument("--grad-clip", type=float)
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="compile the loss and capture the step in a CUDA graph (default: on for CUDA, off on CPU)")
    p.add_argument("--checkpoint-every", type=int, default=0, metavar="N",
                   help="also checkpoint every N epochs (default: only at pauses and at the end)")


def config_from_args(a: argparse.Namespace):
    from hill_app.engine.config import RunConfig
    pause = [e for e in a.pause_at if e <= a.epochs] if a.pause_at else []
    return RunConfig(dataset=a.dataset, data_root=a.data_root, download=a.download, model=a.model,
                     epochs=a.epochs, pause_at=pause, alpha=a.alpha, lam=a.lam, seed=a.seed, device=a.device,
                     batch_size=a.batch_size, lr=a.lr, optimizer=a.optimizer, projection=a.projection,
                     view_size=a.view_size, grad_clip=a.grad_clip, compile=a.compile,
                     checkpoint_every=a.checkpoint_every)


def cmd_train(a: argparse.Namespace) -> int:
    from hill_app.engine.config import ConfigError, RunConfig
    from hill_app.engine.edits_file import EditsFileError, load_edits_file, scripted_pause_handler
    from hill_app.engine.events import EventChannel
    from hill_app.engine.progress import ProgressBar
    from hill_app.engine.session import TrainingSession, view_set_indices
    from hill_app.datasets import DataError, load_dataset

    events = EventChannel()
    try:
        if a.resume:
            run_dir = Path(a.resume)
            cfg = RunConfig.load(run_dir / "config.json")
        else:
            cfg = config_from_args(a)
            run_dir = Path(a.out)
            if (run_dir / "journal.jsonl").exists():
                print(f"error: {run_dir} already holds a run; choose another --out or continue it with "
                      f"--resume {run_dir}", file=sys.stderr)
                return EXIT_USAGE
        cfg = cfg.resolved()
        edits_path = Path(a.edits) if a.edits else (run_dir / "edits.json" if a.resume else None)
        if edits_path is not None and not edits_path.exists() and not a.edits:
            edits_path = None
        bundle = load_dataset(cfg.dataset, cfg.data_root, download=cfg.download,
                              synthetic_size=cfg.synthetic_size, seed=cfg.seed)
        interventions = []
        if edits_path is not None:  # checked whole against the data before anything is written
            interventions = load_edits_file(edits_path, pause_at=cfg.pause_at, num_classes=bundle.num_classes,
                                            view_size=len(view_set_indices(cfg, bundle.train_y)))
        bar = ProgressBar(cfg.epochs)
        events.subscribe(bar)
        session = TrainingSession(cfg, run_dir, bundle=bundle, events=events, resume=bool(a.resume))
        if edits_path is not None:
            if a.edits and not a.resume:
                from hill_app.engine.files import atomic_write_text
                atomic_write_text(run_dir / "edits.json", edits_path.read_text())
        session.pause_handler = scripted_pause_handler(interventions)
        summary = session.run()
    except (ConfigError, EditsFileError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as e:
        print(f"error: {e.filename or ''}: {e.strerror or e}", file=sys.stderr)
        return EXIT_USAGE
    print(f"\ndone: test accuracy {summary['test_accuracy']:.4f}, val accuracy {summary['val_accuracy']:.4f}, "
          f"{summary['epochs']} epochs, {summary['edits_applied']} edits, {summary['wall_seconds']:.1f} s "
          f"-> {run_dir / 'summary.json'}", file=sys.stderr)
    if a.json:
        print(json.dumps(summary))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hill-app", description="Steer training by reshaping the latent space.")
    sub = p.add_subparsers(dest="cmd")
    t = sub.add_parser("train", help="run a whole pause-and-edit protocol headless")
    add_run_options(t)
    t.add_argument("--edits", help="JSON file of interventions applied at the pauses")
    t.add_argument("--out", default="runs/latest", help="run folder (journal, checkpoints, snapshots, summary)")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint")
    t.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    t.set_defaults(fn=cmd_train)

    r = sub.add_parser("replay", help="re-run a run's journal and compare every logged metric")
    r.add_argument("run_dir")
    r.add_argument("--out", help="folder for the replayed run (default: RUN_DIR/replay)")
    r.add_argument("--device", default="cpu", help="replays are exact on the CPU")
    r.set_defaults(fn=lambda a: _lazy("hill_app.engine.replay", "replay_main")(a))

    st = sub.add_parser("study", help="run a user-study session from a protocol file")
    st.add_argument("protocol", help="a protocol TOML file (see studies/protocols/)")
    st.add_argument("--participant", required=True, help="participant id, e.g. P07")
    st.add_argument("--out", default="studies_out", help="study folder (one sub-folder per session)")
    st.add_argument("--scripted", metavar="EDITS_JSON", help="a scripted participant (edits file); no window")
    st.add_argument("--answers", metavar="ANSWERS_JSON", help="questionnaire answers of a scripted participant")
    st.add_argument("--device", default=None, help="override the protocol's device (auto, cpu, cuda)")
    st.set_defaults(fn=lambda a: _lazy("hill_app.studies.cli", "study_main")(a))

    rp = sub.add_parser("report", help="turn a study folder into an HTML report with figures and a CSV")
    rp.add_argument("study_dir")
    rp.add_argument("--out", help="report folder (default: STUDY_DIR/report)")
    rp.set_defaults(fn=lambda a: _lazy("hill_app.studies.cli", "report_main")(a))
    return p


def _lazy(module: str, name: str):
    """Import a subcommand's code only when it runs, so `hill-app train` starts fast."""
    import importlib
    return getattr(importlib.import_module(module), name)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        from hill_app.gui.app import run_gui
        return run_gui([])
    p = build_parser()
    a = p.parse_args(argv)
    if not getattr(a, "fn", None):
        p.print_help()
        return EXIT_USAGE
    return a.fn(a)


if __name__ == "__main__":
    sys.exit(main())
