"""`hill-app`: no arguments opens the window; subcommands run headless (train, replay, study, report, attach,
compare)."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

EXIT_FAILED = 1  # the run started and did not end well (non-finite loss, an error while training)
EXIT_USAGE = 2  # refused before anything ran: a bad option, file or folder
DEFAULT_SERVE = "127.0.0.1:7007"
# options that --resume accepts: everything else is the run's own configuration, fixed in its config.json
RESUME_OPTIONS = frozenset({"resume", "json", "serve", "serve_open_events", "edits"})


def _int_list(text: str) -> list[int]:
    if text.strip() in ("", "none"):
        return []
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        shown = text if len(text) <= 40 else text[:30] + "..."
        raise argparse.ArgumentTypeError(
            f"expected comma-separated epochs such as 25,30,35,40, got {shown!r}"
        ) from None


def _shown(text: str) -> str:
    return repr(text) if len(text) <= 40 else repr(text[:30] + "...") + f" ({len(text)} characters)"


def _integer(text: str) -> int:
    """A whole-number option, as written ("1e20" or "3.0" is not one)."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number such as 40, got {_shown(text)}") from None


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number such as 0.05, got {_shown(text)}") from None


class _Parser(argparse.ArgumentParser):
    """A usage error is one line: the option, the value and what was expected (the usage is in --help)."""

    def error(self, message: str) -> NoReturn:
        text = " ".join(message.split())
        if len(text) > 400:
            text = text[:300] + f" ... ({len(text)} characters)"
        self.exit(EXIT_USAGE, f"{self.prog}: error: {text} (see {self.prog} --help)\n")


def _size(text: str) -> int | float:
    """A count ("5000") or a fraction ("0.1")."""
    t = text.strip()
    try:
        return int(t)
    except ValueError:
        pass
    try:
        return float(t)
    except ValueError:
        shown = t if len(t) <= 40 else t[:30] + "..."
        raise argparse.ArgumentTypeError(
            f"expected a count such as 5000 or a fraction such as 0.1, got {shown!r}"
        ) from None


def add_run_options(p: argparse.ArgumentParser, suppress: bool = False) -> None:
    """The run's configuration. ``suppress``: no defaults, so that parsing tells which options were given."""
    from hill_app.datasets import DATASET_NAMES
    from hill_app.engine.config import RunConfig

    defaults = RunConfig()  # every default below is the configuration's own
    pauses = ",".join(map(str, defaults.pause_at))

    def d(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    p.add_argument("--dataset", choices=DATASET_NAMES, default=d(defaults.dataset))
    p.add_argument(
        "--data-root",
        default=d(defaults.data_root),
        help="data folder (CIFAR-10: cifar-10-batches-py or the archive; PAMAP2: Protocol/)",
    )
    p.add_argument(
        "--download",
        action="store_true",
        default=d(defaults.download),
        help="CIFAR-10: download (MD5-checked) if not on disk",
    )
    p.add_argument(
        "--model", default=d(defaults.model), help="digits_cnn, airbench, resnet18, pamap_cnn1d (default: per data set)"
    )
    p.add_argument("--epochs", type=_integer, default=d(defaults.epochs))
    p.add_argument(
        "--pause-at",
        type=_int_list,
        default=d(None),
        help=f"epochs to pause before, comma-separated (default {pauses}, those within --epochs; 'none' for no pauses)",
    )
    p.add_argument("--alpha", type=_number, default=d(defaults.alpha))
    p.add_argument("--lam", type=_number, default=d(defaults.lam))
    p.add_argument(
        "--ce-weight",
        choices=["blend", "full"],
        default=d(defaults.ce_weight),
        help="blend: (1-alpha) CE + alpha L_human (the paper); full: CE keeps weight 1",
    )
    p.add_argument("--seed", type=_integer, default=d(defaults.seed))
    p.add_argument("--device", default=d(defaults.device), help="auto (CUDA where there is one), cpu, cuda, cuda:N")
    p.add_argument("--batch-size", type=_integer, default=d(defaults.batch_size))
    p.add_argument("--lr", type=_number, default=d(defaults.lr))
    p.add_argument("--optimizer", choices=["sgd", "adam", "adamw"], default=d(defaults.optimizer))
    p.add_argument("--projection", choices=["pca", "lda"], default=d(defaults.projection))
    p.add_argument(
        "--view-size",
        type=_integer,
        default=d(defaults.view_size),
        help="points in the latent view (0: the whole training split)",
    )
    p.add_argument(
        "--val-size",
        type=_size,
        default=d(defaults.val_size),
        help="validation split: a count (5000) or a fraction (0.1) of the training data (default: per data set)",
    )
    p.add_argument(
        "--train-size",
        type=_size,
        default=d(defaults.train_size),
        help="train on a stratified, seeded subset of the rest: a count or a fraction (default: all)",
    )
    p.add_argument("--grad-clip", type=_number, default=d(defaults.grad_clip))
    p.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=d(defaults.compile),
        help="compile the loss and capture the step in a CUDA graph (default: on for CUDA, off on CPU)",
    )
    p.add_argument(
        "--checkpoint-every",
        type=_integer,
        default=d(defaults.checkpoint_every),
        metavar="N",
        help="also checkpoint every N epochs (default: only at pauses and at the end)",
    )


def config_from_args(a: argparse.Namespace):
    """The RunConfig the options describe. The default pauses are those within --epochs; pauses given with
    --pause-at are kept as given (one beyond the last epoch is refused, not dropped)."""
    from hill_app.engine.config import RunConfig

    pause = [e for e in RunConfig().pause_at if e <= a.epochs] if a.pause_at is None else list(a.pause_at)
    return RunConfig(
        dataset=a.dataset,
        data_root=a.data_root,
        download=a.download,
        model=a.model,
        epochs=a.epochs,
        pause_at=pause,
        alpha=a.alpha,
        lam=a.lam,
        seed=a.seed,
        device=a.device,
        batch_size=a.batch_size,
        lr=a.lr,
        optimizer=a.optimizer,
        projection=a.projection,
        view_size=a.view_size,
        grad_clip=a.grad_clip,
        compile=a.compile,
        checkpoint_every=a.checkpoint_every,
        val_size=a.val_size,
        train_size=a.train_size,
        ce_weight=a.ce_weight,
    )


def explicit_train_options(argv: Sequence[str]) -> set[str]:
    """The train options named on the command line (not defaulted)."""
    p = argparse.ArgumentParser(add_help=False)
    add_run_options(p, suppress=True)
    _train_only_options(p, suppress=True)
    try:
        known, _ = p.parse_known_args([x for x in argv if x != "train"])
    except SystemExit:  # the real parser has accepted argv already
        return set()
    return set(vars(known))


def _train_only_options(t: argparse.ArgumentParser, suppress: bool = False) -> None:
    def d(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    t.add_argument("--edits", default=d(None), help="JSON file of interventions applied at the pauses")
    t.add_argument("--out", default=d("runs/latest"), help="run folder (journal, checkpoints, snapshots, summary)")
    t.add_argument("--resume", metavar="RUN_DIR", default=d(None), help="continue a run from its last checkpoint")
    t.add_argument("--json", action="store_true", default=d(False), help="print the summary as JSON on stdout")
    t.add_argument(
        "--serve",
        nargs="?",
        const=DEFAULT_SERVE,
        default=d(None),
        metavar="[HOST:]PORT",
        help=f"serve the run to clients (the window, agents) on a loopback port (bare: {DEFAULT_SERVE})",
    )
    t.add_argument(
        "--serve-open-events",
        action="store_true",
        default=d(False),
        help="with --serve: let loopback clients read the event stream without the token (read-only)",
    )


def _say(msg: str) -> None:
    print(msg, file=sys.stderr)


def one_line(e: BaseException) -> str:
    """An error as one line that names the file where there is one."""
    if isinstance(e, OSError) and type(e).__str__ is OSError.__str__:
        where = e.filename if e.filename is not None else None
        what = e.strerror or str(e)
        text = f"{where}: {what}" if where else what
    else:
        text = str(e) or type(e).__name__
    text = " ".join(text.split())
    return text if len(text) <= 600 else text[:580] + " ..."


def _known_errors() -> tuple[type[BaseException], ...]:
    from hill_app.datasets import DataError
    from hill_app.engine.checkpoints import CheckpointError
    from hill_app.engine.config import ConfigError
    from hill_app.engine.edits_file import EditsFileError
    from hill_app.engine.errors import CommandError

    return (ConfigError, EditsFileError, DataError, CheckpointError, CommandError, OSError)


def cmd_train(a: argparse.Namespace) -> int:
    from hill_app.engine.config import ConfigError, RunConfig
    from hill_app.engine.edits_file import load_edits_file
    from hill_app.engine.events import EventChannel
    from hill_app.engine.progress import ProgressBar
    from hill_app.engine.runlock import RunLock
    from hill_app.engine.session import TrainingSession, load_run_data, view_set_indices

    known = _known_errors()
    events = EventChannel()
    lock = None
    try:
        if a.resume:
            run_dir = Path(a.resume)
            fixed = sorted(getattr(a, "_explicit", set()) - RESUME_OPTIONS)
            if fixed:
                names = ", ".join("--" + n.replace("_", "-") for n in fixed)
                _say(
                    f"error: {names}: --resume continues {run_dir} as configured in {run_dir / 'config.json'}; "
                    "its options cannot be changed here (send a command such as update_optimizer at a pause, "
                    "or start a new run)"
                )
                return EXIT_USAGE
            cfg = RunConfig.load(run_dir / "config.json")
        else:
            cfg = config_from_args(a)
            run_dir = Path(a.out)
            if run_dir.exists() and not run_dir.is_dir():
                _say(f"error: {run_dir}: --out is a file; expected a new or empty folder for the run")
                return EXIT_USAGE
            j = run_dir / "journal.jsonl"
            if j.exists() and j.stat().st_size > 0:
                _say(
                    f"error: {run_dir} already holds a run; choose another --out or continue it with --resume {run_dir}"
                )
                return EXIT_USAGE
        try:
            cfg = cfg.resolved()
        except ConfigError as e:
            if a.resume:
                raise ConfigError(f"{run_dir / 'config.json'}: {e}") from None
            raise
        edits_path = _edits_path(a, run_dir)
        bundle = load_run_data(cfg)
        context = _checking_context(cfg, bundle, resume=bool(a.resume))  # refuses a model the data does not fit
        interventions = []
        if edits_path is not None:  # checked whole against the data and the model before anything is written
            interventions = load_edits_file(
                edits_path,
                pause_at=cfg.pause_at,
                num_classes=bundle.num_classes,
                view_size=len(view_set_indices(cfg, bundle.train_y)),
                context=context,
            )
            if not a.resume:
                _check_added_files(edits_path, interventions, bundle)
        bar = ProgressBar(cfg.epochs)
        events.subscribe(bar)
        run_dir.mkdir(parents=True, exist_ok=True)
        lock = RunLock.acquire(run_dir)
        if not a.resume:
            _prepare_new_run(run_dir, edits_path)
        session = TrainingSession(cfg, run_dir, bundle=bundle, events=events, resume=bool(a.resume), lock=lock)
    except known as e:
        if lock is not None:
            lock.release()
        _say(f"error: {one_line(e)}")
        return EXIT_USAGE
    session.pause_handler = _pause_handler(interventions, serving=a.serve is not None)
    handle = None
    try:
        if a.serve is not None:
            try:
                from hill_app.server import serve_session
            except ImportError as e:
                _say(f"error: --serve needs the control server (hill_app.server): {e}")
                return EXIT_USAGE
            try:
                handle = serve_session(session, a.serve, open_events=a.serve_open_events)
            except Exception as e:  # ServeError and the OS's own (port taken, address not local)
                _say(f"error: --serve {a.serve}: {one_line(e)}")
                return EXIT_USAGE
            _say(f"serving on {handle.url} (token in {run_dir / 'control.json'})")
        with _stop_on_signals(session):
            summary = session.run()
    except KeyboardInterrupt:
        _say(
            f"interrupted twice: stopped at once, without a final checkpoint; continue from the last one with: "
            f"hill-app train --resume {run_dir}"
        )
        return 130
    except Exception as e:
        where = (
            f"the traceback is in {run_dir / 'journal.jsonl'}, record 'error'"
            if getattr(session, "error_recorded", False)
            else "the journal had no room for the error record"
        )
        from hill_app.engine.projection import ProjectionError

        if isinstance(e, ProjectionError):  # the run's own state: a resume meets it again
            then = f"a resume would stop here again; start a new run with a lower --lr (this run: {session.config.lr})"
        else:
            then = f"continue from the last checkpoint with: hill-app train --resume {run_dir}"
        _say(f"error: training stopped {session.position()}: {one_line(e)} ({where}; {then})")
        return EXIT_FAILED
    finally:
        session.close()
        if handle is not None:
            handle.close()
    stop = summary.get("stop") or {}
    if stop.get("cause") == "signal":
        name = str(stop.get("reason", "")).split(" ")[0]
        _say(
            f"\nstopped by {name} at epoch {stop.get('epoch')}, step {stop.get('step')}; checkpoint saved. "
            f"Continue with: hill-app train --resume {run_dir}"
        )
        return 128 + _signal_number(name)
    if stop.get("cause") == "nonfinite":
        _say(
            f"\nerror: training stopped at epoch {stop.get('epoch')}, step {stop.get('step')}: {stop.get('reason')} "
            f"(journal record 'stopped' in {run_dir / 'journal.jsonl'})"
        )
        return EXIT_FAILED
    _say(
        f"\ndone: test accuracy {summary['test_accuracy']:.4f}, val accuracy {summary['val_accuracy']:.4f}, "
        f"{summary['epochs']} epochs, {summary['edits_applied']} edits, {summary['wall_seconds']:.1f} s "
        f"-> {run_dir / 'summary.json'}"
    )
    if a.json:
        print(json.dumps(summary))
    return 0


def _checking_context(cfg: Any, bundle: Any, resume: bool) -> Any:
    """What the edits file is checked against before training: the run's model and optimiser, built here on the
    CPU with the random state left as it was (the session builds its own from the seed). A model that cannot
    take the data is refused here, before anything is written. A new run has no checkpoint a script could name;
    a resume's script was checked when its run started, and its checkpoints and added files are the run's own
    by now, so those are left to the handlers."""
    import types

    import torch

    from hill_app.engine.config import ConfigError
    from hill_app.engine.handlers import context_for
    from hill_app.engine.models import build_model
    from hill_app.engine.session import TrainingSession, view_set_indices

    with torch.random.fork_rng(devices=[]):
        try:
            model = build_model(cfg.model, bundle.input_shape, bundle.num_classes)
        except ValueError as e:
            raise ConfigError(f"{e}; choose another --model for the {cfg.dataset} data") from None
    view = view_set_indices(cfg, bundle.train_y)
    if len(view) < 3:  # else the run would fail after epoch 1, fitting the 2D view
        raise ConfigError(
            f"train_size: the training split holds {len(view)} sample(s) (--val-size {cfg.val_size}, "
            f"--train-size {cfg.train_size}); expected at least 3 for the 2D view"
        )
    present = len(torch.unique(bundle.train_y[torch.as_tensor(view)]))
    if cfg.projection == "lda" and present < 3:
        raise ConfigError(
            f"projection: lda needs at least 3 classes in the view set, the training split has "
            f"{present}; expected --projection pca for this data"
        )
    shell = types.SimpleNamespace(config=cfg, model=model, device=torch.device("cpu"), use_compile=False)
    optimizer = TrainingSession._make_optimizer(shell)  # type: ignore[arg-type]  # the same kind and groups
    return context_for(
        model,
        optimizer,
        num_classes=bundle.num_classes,
        n_train=int(bundle.train_x.shape[0]),
        view_size=len(view),
        checkpoint_uuids=None if resume else frozenset(),
        check_files=not resume,
    )


def _check_added_files(edits_path: Path, interventions: list, bundle: Any) -> None:
    """The files a script adds are read now, as the pause will read them."""
    from hill_app.datasets import DataError
    from hill_app.datasets.samples_file import read_samples_file
    from hill_app.engine.edits_file import EditsFileError

    for iv in interventions:
        for j, c in enumerate(iv.commands):
            args = c.get("args") or {}
            if c.get("command") == "update_dataset" and args.get("action") == "add":
                try:
                    read_samples_file(bundle, args["path"])
                except DataError as e:
                    raise EditsFileError(
                        f"{edits_path}: the intervention at epoch {iv.epoch}, commands[{j}]: update_dataset add: {e}"
                    ) from None


def _edits_path(a: argparse.Namespace, run_dir: Path) -> Path | None:
    """The edits file the run plays. A resume plays the copy in its folder; naming another file is refused."""
    from hill_app.engine.config import ConfigError

    kept = run_dir / "edits.json"
    if not a.resume:
        return Path(a.edits) if a.edits else None
    if a.edits:
        given = Path(a.edits)
        try:
            same = kept.is_file() and given.read_bytes() == kept.read_bytes()
        except OSError as e:
            raise ConfigError(f"{given}: cannot read the edits file ({e.strerror or e})") from None
        if not same:
            raise ConfigError(
                f"{given}: --resume plays the run's own script {kept}; another edits file cannot be "
                "swapped in (start a new run with it)"
            )
    return kept if kept.is_file() else None


def _prepare_new_run(run_dir: Path, edits_path: Path | None) -> None:
    """Under the run lock, before the session writes config.json and its first journal record: the edits file
    goes in first, so a kill at any later moment leaves everything a resume needs in the folder."""
    from hill_app.engine.config import ConfigError
    from hill_app.engine.files import atomic_write_bytes
    from hill_app.engine.resume import check_new_run_folder

    check_new_run_folder(run_dir)
    kept = run_dir / "edits.json"
    if edits_path is None:
        if kept.exists():
            raise ConfigError(
                f"{kept} is in the folder but no --edits was given; pass --edits {kept} to play it, or move it away"
            )
        return
    data = edits_path.read_bytes()
    if not (kept.is_file() and kept.read_bytes() == data):
        atomic_write_bytes(kept, data)


def _pause_handler(interventions: list, serving: bool) -> Any:
    """Headless: the script plays the scheduled pauses and stops at any other (a non-finite loss). Served:
    with no script every pause waits for a client; with one, the script plays its pauses and the others wait."""
    from hill_app.engine.edits_file import scripted_pause_handler

    if serving and not interventions:
        return None
    script = scripted_pause_handler(interventions)

    def handler(session: Any, info: Any) -> None:
        if serving and not str(getattr(info, "reason", "")).startswith("scheduled pause"):
            return
        done = sum(1 for d in getattr(info, "done", []) if d.get("source") == "script")
        # a pause a crash interrupted after the script had sent some of its commands: those were re-applied
        # from the journal, so the script sends only the rest
        script(_SkipSubmits(session, done) if done else session, info)

    return handler


class _SkipSubmits:
    """The session, except that the first ``n`` submits are dropped (they were applied before a crash)."""

    def __init__(self, session: Any, n: int):
        self._session, self._skip = session, n

    def submit(self, *args: Any, **kw: Any) -> Any:
        if self._skip > 0:
            self._skip -= 1
            return None
        return self._session.submit(*args, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


class _stop_on_signals:
    """SIGINT and SIGTERM stop the run at the next step boundary (checkpoint, 'stopped' record); a second one
    stops at once. Only in the main thread (where Python delivers signals)."""

    def __init__(self, session: Any):
        self.session = session
        self.old: dict[int, Any] = {}

    def _on(self, signum: int, frame: Any) -> None:
        if self.session._signal_stop is not None:
            raise KeyboardInterrupt
        self.session.request_stop_from_signal(signal.Signals(signum).name)

    def __enter__(self) -> _stop_on_signals:
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self.old[s] = signal.signal(s, self._on)
        return self

    def __exit__(self, *exc: Any) -> None:
        for s, h in self.old.items():
            signal.signal(s, h)


def _signal_number(name: str) -> int:
    try:
        return int(signal.Signals[name])
    except KeyError:
        return 1


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="hill-app", description="Steer training by reshaping the latent space.")
    sub = p.add_subparsers(dest="cmd")
    t = sub.add_parser("train", help="run a whole pause-and-edit protocol headless")
    add_run_options(t)
    _train_only_options(t)
    t.set_defaults(fn=cmd_train)

    r = sub.add_parser("replay", help="re-run a run's journal and compare every logged metric")
    r.add_argument("run_dir")
    r.add_argument(
        "--out",
        help="new or empty folder for the replayed run (default: RUN_DIR/replay, or a fresh "
        "RUN_DIR/replay-N; nothing is ever deleted)",
    )
    r.add_argument("--device", default="cpu", help="replays are exact on the CPU")
    r.set_defaults(fn=lambda a: _lazy("hill_app.engine.replay", "replay_main")(a))

    st = sub.add_parser("study", help="run a user-study session from a protocol file")
    st.add_argument("protocol", help="a protocol TOML file (see studies/protocols/)")
    st.add_argument("--participant", required=True, help="participant id, e.g. P07")
    st.add_argument("--out", default="studies_out", help="study folder (one sub-folder per session)")
    st.add_argument("--scripted", metavar="EDITS_JSON", help="a scripted participant (edits file); no window")
    st.add_argument("--answers", metavar="ANSWERS_JSON", help="questionnaire answers of a scripted participant")
    st.add_argument("--device", default=None, help="override the protocol's device (auto, cpu, cuda)")
    st.set_defaults(fn=lambda a: _lazy("hill_app.studies.cli", "study_main")(a, window=_study_window))

    rp = sub.add_parser("report", help="turn a study folder into an HTML report with figures and a CSV")
    rp.add_argument("study_dir")
    rp.add_argument("--out", help="report folder (default: STUDY_DIR/report)")
    rp.set_defaults(fn=lambda a: _lazy("hill_app.studies.cli", "report_main")(a))

    at = sub.add_parser("attach", help="open the window on a served run (its URL or its run folder)")
    at.add_argument("target", metavar="URL|RUN_DIR")
    at.set_defaults(fn=_attach)

    cp = sub.add_parser("compare", help="run edit strategies against baselines over seeds and report the gains")
    cp.set_defaults(fn=_compare_unavailable)
    return p


def _attach(a: argparse.Namespace) -> int:
    try:
        main_fn = _lazy("hill_app.gui.attach", "main")
    except (ImportError, AttributeError) as e:
        _say(f"error: attach is not available in this installation ({one_line(e)})")
        return EXIT_USAGE
    return int(main_fn(a.target) or 0)


def _compare_unavailable(a: argparse.Namespace) -> int:
    _say(f"error: compare is not available in this installation ({getattr(a, '_compare_error', 'not found')})")
    return EXIT_USAGE


def _add_compare(p: argparse.ArgumentParser) -> None:
    """The compare subcommand's own arguments, only when it runs (its module is heavier than train's)."""
    sub = next(x for x in p._subparsers._group_actions if isinstance(x, argparse._SubParsersAction))  # type: ignore
    cp = sub.choices["compare"]
    try:
        from hill_app.studies import compare

        compare.add_arguments(cp)
    except (ImportError, AttributeError) as e:
        cp.set_defaults(_compare_error=one_line(e))
        cp.add_argument("rest", nargs=argparse.REMAINDER)
        return
    cp.set_defaults(fn=compare.run)


def _study_window() -> tuple[Any, type[Exception]]:
    """The study window's entry and error type, imported only when a participant uses the window. The window
    imports studies, so it is opened from here: studies never imports hill_app.gui."""
    from hill_app.gui.study_window import StudyWindowError, run_study_gui

    return run_study_gui, StudyWindowError


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
    if argv[0] == "compare":
        _add_compare(p)
    a = p.parse_args(argv)
    if not getattr(a, "fn", None):
        p.print_help()
        return EXIT_USAGE
    if a.cmd == "train":
        a._explicit = explicit_train_options(argv[1:])
    shown, warnings.formatwarning = warnings.formatwarning, _warning_line
    try:
        return int(a.fn(a) or 0)
    except KeyboardInterrupt:
        _say("interrupted")
        return 130
    except RecursionError:
        _say("error: an input is nested too deeply to be read")
        return EXIT_USAGE
    except _known_errors() as e:
        _say(f"error: {one_line(e)}")
        return EXIT_USAGE
    except Exception as e:  # never a bare traceback: one line, and where to look
        _say(f"error: {type(e).__name__}: {one_line(e)}")
        return EXIT_FAILED
    finally:
        warnings.formatwarning = shown


def _warning_line(
    message: Warning | str, category: type[Warning], filename: str, lineno: int, line: str | None = None
) -> str:
    """A warning (a PAMAP2 subject left out, ...) as one line in the user's terms, without the source line."""
    return f"warning: {' '.join(str(message).split())}\n"


if __name__ == "__main__":
    sys.exit(main())
