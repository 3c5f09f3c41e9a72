"""The training session: one thread owns the model, the optimiser and the data; everything else talks to it
through the command queue and listens on the event channel.

The loop is small and readable (minGPT's lesson): the session knows nothing about a model's insides
beyond ``forward -> (logits, features)``. Commands are applied at the next step boundary, also while
paused (a pause waits on the queue). Every command status change, edit and epoch metric goes to the journal.
"""

from __future__ import annotations

import collections
import json
import queue
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from hill_app.datasets import DataBundle, load_dataset, stratified_split
from hill_app.datasets.augment import flip_crop
from hill_app.losses import (
    LatentTargets,
    LossWeights,
    TargetLayout,
    apply_edits,
    hill_native,
    layout_from_points,
    with_metric,
)

from . import handlers
from .branches import CheckpointTree
from .commands import END_OF_EPOCH, SPECS, Command, CommandError
from .config import ConfigError, RunConfig
from .events import EventChannel
from .history import completed_pauses, effective_commands, interrupted_pauses
from .journal import Journal
from .models import build_model
from .optimizers import make_optimizer
from .projection import Projection, fit_projection
from .resume import (
    ResumePlan,
    check_journal_length,
    check_new_run_folder,
    input_hashes,
    plan_resume,
    remove_stale_temp_files,
)
from .runlock import RunLock
from .snapshots import SnapshotStore
from .step import STEP_STATS, TrainStep
from .training_data import TrainingData


class _MeasureAgain(Exception):
    """Raised between the batches of the end-of-epoch evaluation when a step command is to be applied first."""


def resolve_device(spec: str) -> torch.device:
    """'auto' takes CUDA where there is one; naming CUDA where there is none is an error, not a fallback."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device: {spec!r} asked for, but this machine has no CUDA device (use cpu or auto)")
        return torch.device(spec)
    if spec == "cpu":
        return torch.device("cpu")
    raise ConfigError(f"device: expected auto, cpu or cuda[:N], got {spec!r}")


def load_run_data(config: RunConfig) -> DataBundle:
    """The run's data set, with the split sizes passed through when the loader takes them (C1)."""
    import inspect

    kw: dict[str, Any] = {"download": config.download, "synthetic_size": config.synthetic_size, "seed": config.seed}
    params = inspect.signature(load_dataset).parameters
    for name in ("val_size", "train_size"):
        value = getattr(config, name)
        if name in params:
            kw[name] = value
        elif value is not None:
            raise ConfigError(
                f"{name}: this version's data loaders do not take a {name.replace('_', ' ')} yet "
                f"(hill_app.datasets.load_dataset has no {name} argument); leave it unset"
            )
    return load_dataset(config.dataset, config.data_root, **kw)


def view_set_indices(config: RunConfig, train_y: torch.Tensor) -> np.ndarray:
    """The fixed, stratified subset of training samples shown in the latent view (all of them for digits)."""
    n = len(train_y)
    vs = config.view_size or 0
    if vs <= 0 or vs >= n:
        return np.arange(n)
    _, held = stratified_split(train_y, vs / n, seed=4321)
    return held.numpy()


@dataclass
class EpochProgress:
    """Where the current epoch stands, so a checkpoint taken mid-epoch resumes at the same sample."""

    order: torch.Tensor  # this epoch's sample order (CPU int64)
    pos: int  # next step within the epoch
    n_steps: int
    totals: torch.Tensor  # running sums of STEP_STATS
    seen: int = 0
    seconds: float = 0.0

    def to_state(self) -> dict[str, Any]:
        return {
            "order": self.order.clone(),
            "pos": self.pos,
            "n_steps": self.n_steps,
            "totals": self.totals.clone(),
            "seen": self.seen,
            "seconds": self.seconds,
        }

    @classmethod
    def from_state(cls, d: dict[str, Any] | None) -> EpochProgress | None:
        if d is None:
            return None
        return cls(
            d["order"].clone(),
            int(d["pos"]),
            int(d["n_steps"]),
            d["totals"].clone(),
            int(d["seen"]),
            float(d["seconds"]),
        )


class ViewPoints(NamedTuple):
    features: np.ndarray  # (N, D) penultimate features of the view set (batch-norm batch statistics)
    preds: np.ndarray  # (N,) the model's predictions (eval mode)
    z: np.ndarray  # (N, 2) positions through the frozen map


@dataclass
class PauseInfo:
    epoch: int  # the epoch about to start (1-based)
    step: int
    reason: str
    # a pause that a crash or a stop interrupted, entered again after --resume: the commands already applied
    # at it ({command, source, status}, in order; their effects are restored), so a script does not repeat them
    done: list[dict[str, Any]] = field(default_factory=list)


class ResumeFailed(RuntimeError):
    """A journaled command could not be re-applied (resume or replay): the run would not be the same."""


class TrainingSession:
    """A run in a run folder. ``run()`` trains until done or stopped; ``submit()`` is safe from any thread."""

    def __init__(
        self,
        config: RunConfig,
        run_dir: str | Path,
        *,
        bundle: DataBundle | None = None,
        events: EventChannel | None = None,
        pause_handler: Callable[[TrainingSession, PauseInfo], None] | None = None,
        resume: bool = False,
        lock: RunLock | None = None,
        cpu_kernel: str | None = None,
    ):
        """``lock``: the folder's RunLock when the caller took it first (to write files before the run starts);
        else the session takes it. It is held until the run ends or :meth:`close`; a second session on the
        folder (another process, or another session here) is refused with the holder's pid. ``cpu_kernel``:
        the HILL loss's CPU arithmetic ("native" or "numpy"; a replay passes the one its run recorded), else
        the one the run recorded when resuming, else the fastest available."""
        self._cpu_kernel_wanted = cpu_kernel
        self.config = config.resolved()
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._runlock = lock if lock is not None else RunLock.acquire(self.run_dir)
        try:
            self._setup(bundle, events, pause_handler, resume)
        except BaseException:
            self.close()
            raise

    def _setup(
        self,
        bundle: DataBundle | None,
        events: EventChannel | None,
        pause_handler: Callable[[TrainingSession, PauseInfo], None] | None,
        resume: bool,
    ) -> None:
        cleaned = remove_stale_temp_files(self.run_dir)
        plan: ResumePlan | None = None
        if resume:  # the whole folder is checked before anything in it is written
            plan = plan_resume(self.run_dir)
        else:
            check_new_run_folder(self.run_dir)
            # first, so that a kill at any later moment leaves a folder that --resume can continue
            self.config.save(self.run_dir / "config.json")
        self.events = events if events is not None else EventChannel()
        self.pause_handler = pause_handler
        self.device = resolve_device(self.config.device)
        self.use_compile = self.config.compile if self.config.compile is not None else self.device.type == "cuda"
        self.tree = plan.tree if plan is not None else CheckpointTree(self.run_dir / "checkpoints")
        self.snapshots = SnapshotStore(self.run_dir / "snapshots.h5")
        self._queue: queue.Queue[Command] = queue.Queue()
        # taken from the queue during the end-of-epoch work but not applied there: they go first next time
        self._held: collections.deque[Command] = collections.deque()
        self._settings_open = False  # between the batches of the end-of-epoch work, before anything else waits
        self._restart_ok = False  # ... and a step command may still cut the evaluation short (once an epoch)
        self._lock = threading.Lock()
        self.commands: dict[str, Command] = {}

        cfg = self.config
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed % (2**32))
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.data = bundle if bundle is not None else load_run_data(cfg)
        self._place_data()
        assert cfg.model is not None  # resolved() names the data set's default model
        self.model = build_model(cfg.model, self.data.input_shape, self.data.num_classes).to(self.device)
        if self._channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # not in the stubs
        self.optimizer = self._make_optimizer()
        self.weights = LossWeights(cfg.w_center, cfg.w_spread, cfg.w_sep, cfg.w_point)
        self.alpha = cfg.alpha
        self.lam = cfg.lam
        self.grad_clip = cfg.grad_clip
        self.projection: Projection | None = None
        self.layout: TargetLayout | None = None  # the committed teacher layout
        self.targets: LatentTargets | None = None  # its tensors on the device
        self.class_weights: torch.Tensor | None = None
        self.epoch = 0  # epochs completed
        self.step = 0  # optimiser steps taken by the current model lineage
        self.branch = "main"
        self.parent_ckpt: str | None = None
        self.paused = False
        self.pause_reason = ""
        self.stop_requested = False
        self.stop_reason: str | None = None  # why the run stopped early (the stop command's reason)
        self.stop_cause: str | None = None  # "command" | "nonfinite" | "signal"
        self._signal_stop: str | None = None  # set by a signal handler (only an assignment there)
        self._signal_sent = False
        self.finished = False
        self.last_metrics: dict[str, Any] = {}
        self.edits_applied = 0
        self.schedule: list[Command] = []  # journaled commands re-applied at their (branch, step)
        self.replaying = False  # exact replay: no scheduled pauses, no pause handler
        self.translate_uuid: dict[str, str] = {}  # replay: original checkpoint uuid -> this run's
        self.source_dir = self.run_dir  # where re-applied commands find the run's stored files
        self._completed_pauses: set[tuple[str, int]] = set()
        self._pause_done: dict[tuple[str, int], list[dict[str, Any]]] = {}
        self._ep: EpochProgress | None = None
        self.in_end_of_epoch = False  # evaluating and snapshotting the epoch just trained (self.epoch)
        self._pending: list[torch.Tensor] = []
        self._paused_for: set[tuple[str, int]] = set()
        self._wall = 0.0
        self._t_start: float | None = None
        self.known_branches = {"main"}
        self.train_step = TrainStep(self)
        self._nonfinite = False
        self.report_every = 1 if self.device.type == "cpu" else 50
        recorded = plan.started.get("hill_cpu_kernel") if plan is not None and plan.started else None
        self.hill_cpu_kernel = self._pick_cpu_kernel(self._cpu_kernel_wanted or recorded)

        if plan is not None:
            state, node, notes = self._pick_checkpoint(plan)
            self.journal = Journal(self.run_dir / "journal.jsonl")
            if plan.started is None:  # killed before its first record: the run starts here
                self._write_started()
            if plan.tree.dirty:
                plan.tree.save_index()
            self._resume_from(plan, state, node, notes + plan.notes, cleaned)
        else:
            self.journal = Journal(self.run_dir / "journal.jsonl")
            self._write_started(cleaned)

    def _write_started(self, cleaned: list[str] | None = None) -> None:
        split = getattr(self.data, "split_info", None)
        extra: dict[str, Any] = {"split": split} if split else {}
        if cleaned:
            extra["removed_temp_files"] = cleaned
        if self.hill_cpu_kernel:
            extra["hill_cpu_kernel"] = self.hill_cpu_kernel
        self.journal.write(
            "run_started",
            config=self.config.to_json(),
            device=str(self.device),
            torch=torch.__version__,
            n_train=int(self.n_train),
            view_size=len(self.view_idx),
            threads=torch.get_num_threads(),
            inputs=input_hashes(self.run_dir),
            **extra,
        )

    def _pick_cpu_kernel(self, wanted: str | None) -> str | None:
        """The HILL loss's CPU arithmetic for this run (None on other devices). The C kernel and numpy round
        differently in the last bits, so a resumed or replayed run keeps the one its run recorded; where that
        one cannot be had here, say so and use the other."""
        if self.device.type != "cpu":
            return None
        native, why = hill_native.available()
        if wanted == "numpy" or (wanted in (None, "native") and native):
            return wanted or "native"
        if wanted == "native":
            self.events.emit(
                "log",
                level="warning",
                message=f"this run's HILL loss used the C kernel, which is not available here ({why}); using "
                "numpy: losses may differ from the recorded run's in the last bits",
            )
        elif wanted is not None:
            raise ValueError(f"cpu_kernel: expected 'native' or 'numpy', got {wanted!r}")
        else:
            self.events.emit("log", level="info", message=f"HILL loss on the CPU in numpy: {why}")
        return "numpy"

    def close(self) -> None:
        """Release the run folder (the run's end does this; call it for a session that is never run)."""
        lock = getattr(self, "_runlock", None)
        if lock is not None:
            lock.release()
        j = getattr(self, "journal", None)
        if j is not None:
            j.close()

    # ------------------------------------------------------------------ data

    def _place_data(self) -> None:
        d, dev = self.data, self.device
        self._channels_last = dev.type == "cuda" and d.kind == "image"
        self.train_data = TrainingData(d, dev)
        self.val_x, self.val_y = d.val_x.to(dev), d.val_y.to(dev)
        self.test_x, self.test_y = d.test_x.to(dev), d.test_y.to(dev)
        shape = (1, -1) + (1,) * (d.train_x.dim() - 2)
        self._mean = d.mean.to(dev).view(shape).float()
        self._std = d.std.to(dev).view(shape).float()
        self.view_idx = view_set_indices(self.config, d.train_y)
        self._view_idx_t = torch.from_numpy(self.view_idx).to(dev)
        self.view_labels = d.train_y[self.view_idx].numpy()

    # the training split's owner is self.train_data; these read through to it
    @property
    def train_x(self) -> torch.Tensor:
        return self.train_data.x

    @property
    def train_y(self) -> torch.Tensor:
        return self.train_data.y

    @property
    def n_train(self) -> int:
        return self.train_data.n

    @property
    def base_n_train(self) -> int:
        return self.train_data.base_n

    @property
    def added_files(self) -> list[str]:
        return self.train_data.added_files

    @property
    def active(self) -> torch.Tensor:
        return self.train_data.active

    @active.setter
    def active(self, mask: torch.Tensor) -> None:
        self.train_data.active = mask

    def _prep(self, x: torch.Tensor, augment: bool) -> torch.Tensor:
        if x.dtype == torch.uint8:
            x = x.float().div_(255.0)
        x = (x - self._mean) / self._std
        if augment and self.data.augment == "flip_crop":
            x = flip_crop(x, pad=2, generator=self._aug_gen())
        if self._channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _aug_gen(self) -> torch.Generator | None:
        if self.device.type == "cpu":
            return self.gen
        if not hasattr(self, "_cuda_gen"):
            self._cuda_gen = torch.Generator(device=self.device).manual_seed(self.config.seed)
        return self._cuda_gen

    def _epoch_order(self) -> torch.Tensor:
        active = torch.nonzero(self.active).flatten()
        if self.class_weights is None:
            return active[torch.randperm(active.numel(), generator=self.gen)]
        w = self.class_weights[self.data.train_y[active]]
        pick = torch.multinomial(w, active.numel(), replacement=True, generator=self.gen)
        return active[pick]

    def _make_optimizer(self) -> torch.optim.Optimizer:
        cap = self.device.type == "cuda" and self.use_compile  # CUDA-graph capture of the step needs it
        return make_optimizer(self.config, self.model.parameters(), capturable=cap)

    @property
    def autocast(self) -> Any:
        amp = self.config.amp
        on = self.device.type == "cuda" and amp in ("auto", "bf16")
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=on)

    # ------------------------------------------------------------------ commands

    def submit(self, command: Any, args: Any = None, source: str = "user", uuid: str | None = None) -> Command:
        """Queue a command from any thread. A malformed one fails at once with its reason; state is untouched.
        ``uuid``: the client's own id (network clients), echoed on every status change."""
        cmd = Command(
            command=command if isinstance(command, str) else repr(command)[:200],
            args=args if isinstance(args, dict) else ({} if args is None else {"_invalid": repr(args)[:200]}),
            source=source,
        )
        if uuid is not None:
            cmd.uuid = str(uuid)[:64]
        self._set_status(cmd, "requested")
        spec = SPECS.get(command) if isinstance(command, str) else None
        try:
            if self.finished:
                raise CommandError(f"the run has finished; {cmd.command} cannot be applied (start or replay a run)")
            if spec is None:
                raise CommandError(f"unknown command {cmd.command!r}; known: {', '.join(sorted(SPECS))}")
            clean = spec.check_args({} if args is None else args, handlers.session_context(self))
        except CommandError as e:
            self._set_status(cmd, "failed", reason=str(e))
            return cmd
        changed = clean != cmd.args
        cmd.args = clean
        self._set_status(cmd, "pending", args_changed=changed)
        self._queue.put(cmd)
        return cmd

    def _set_status(
        self,
        cmd: Command,
        status: str,
        reason: str | None = None,
        result: dict[str, Any] | None = None,
        args_changed: bool = False,
    ) -> None:
        """Record a status change. The journal gets the arguments on 'requested' (as sent) and again on
        'pending' only when validation changed them (``args_changed``); events always carry them."""
        with self._lock:
            cmd.status = status
            if reason is not None:
                cmd.reason = reason
            if result is not None:
                cmd.result = result
            self.commands[cmd.uuid] = cmd
            if len(self.commands) > 10000:  # bounded: forget the oldest finished ones
                for k in [k for k, c in self.commands.items() if c.status in ("success", "failed")][:5000]:
                    del self.commands[k]
        rec = cmd.to_json()
        rec["requested_time"] = rec.pop("time")
        rec["branch"] = self.branch if hasattr(self, "branch") else "main"
        if not self.journal.closed:  # after the run has finished the journal is closed; the event still goes out
            # requested and pending reach the disk with the next record the training thread writes (running,
            # or failed): the answer to a client does not wait for the disk twice
            sync = status not in ("requested", "pending")
            if status == "requested" or (status == "pending" and args_changed):
                self.journal.write("command", sync=sync, **rec)
            else:  # the arguments are journaled once (a large edit list would otherwise be written four times)
                self.journal.write("command", sync=sync, **{k: v for k, v in rec.items() if k != "args"})
        self.events.emit("command", **rec)

    def _apply(self, cmd: Command, at_epoch_boundary: bool) -> bool:
        """Apply one queued command; False if it must wait for an epoch boundary."""
        spec = SPECS[cmd.command]
        if spec.boundary == "epoch" and not at_epoch_boundary:
            return False
        cmd.step, cmd.epoch = self.step, self.epoch
        self._set_status(cmd, "running")
        try:
            result = spec.handler(self, cmd.args)
        except CommandError as e:
            self._set_status(cmd, "failed", reason=str(e))
        except Exception as e:  # a bug in a handler must not kill training: report it as the reason
            self._set_status(cmd, "failed", reason=f"{type(e).__name__}: {e}")
            self.events.emit("log", level="error", message=traceback.format_exc())
        else:
            if cmd.command == "stop_training":
                self.stop_reason = str(cmd.args.get("reason") or "stop requested")
                self.stop_cause = (
                    "nonfinite" if self._nonfinite else ("signal" if cmd.source == "signal" else "command")
                )
            self._set_status(cmd, "success", result=result or {})
        return True

    def request_stop_from_signal(self, name: str) -> None:
        """Called from a signal handler: only an assignment, no lock. The training thread turns it into a
        journaled stop_training at the next step boundary (or at once while paused)."""
        self._signal_stop = name

    def _check_signal(self) -> None:
        if self._signal_stop is not None and not self._signal_sent:
            self._signal_sent = True
            where = f"epoch {self.epoch + 1}, step {self.step}"
            self.submit("stop_training", {"reason": f"{self._signal_stop} received at {where}"}, source="signal")

    def _next_command(self, timeout: float | None = None) -> Command:
        """The next command to apply: one held back during the end-of-epoch work first, then the queue's
        (waiting up to ``timeout`` seconds; without one, raising queue.Empty at once when there is none)."""
        if self._held:
            return self._held.popleft()
        return self._queue.get_nowait() if timeout is None else self._queue.get(timeout=timeout)

    def _process_commands(self, at_epoch_boundary: bool) -> None:
        self._check_signal()
        if self.schedule:
            self._apply_schedule()
        deferred = []
        while True:
            try:
                cmd = self._next_command()
            except queue.Empty:
                break
            if not self._apply(cmd, at_epoch_boundary or self.paused):
                deferred.append(cmd)
        for cmd in deferred:
            self._queue.put(cmd)

    def _settings_point(self) -> None:
        """Between the batches of the end-of-epoch work (validation, the view), apply queued commands that set
        only what later steps read (``applies="settings"``: the learning rate, alpha, clipping, pause, stop),
        so that a command does not wait out the whole evaluation. They are journaled with phase
        ``end_of_epoch``; a replay or resume applies them at the first such point, which is the same for the
        training math because nothing measured there reads them. The first command of any other kind ends
        this for the epoch: it, and everything after it, waits for the step boundary, in order."""
        if self.schedule:
            self._apply_schedule(phase=END_OF_EPOCH)
        while self._settings_open:
            try:
                cmd = self._queue.get_nowait()
            except queue.Empty:
                return
            spec = SPECS[cmd.command]
            if spec.applies != "settings":
                self._held.append(cmd)
                if self._restart_ok and spec.applies == "step" and not spec.after_epoch_end:
                    raise _MeasureAgain()
                self._settings_open = False
                return
            cmd.phase = END_OF_EPOCH
            self._apply(cmd, False)

    def _apply_held_during_end_of_epoch(self) -> None:
        """The evaluation was cut short for a step command: apply it and the step and settings commands queued
        behind it, until one that must wait. Journaled with phase ``end_of_epoch``: a replay applies them
        before its one evaluation, which is what the original measured after its restart."""
        while True:
            try:
                cmd = self._next_command()
            except queue.Empty:
                return
            spec = SPECS[cmd.command]
            if spec.applies not in ("step", "settings") or spec.after_epoch_end:
                self._held.appendleft(cmd)
                return
            cmd.phase = END_OF_EPOCH
            self._apply(cmd, False)

    def _apply_schedule(self, phase: str | None = None) -> None:
        """Re-apply the journaled commands due at this (branch, step); with ``phase``, only those of that phase."""
        while (
            self.schedule
            and self.schedule[0].step == self.step
            and self.schedule[0].branch == self.branch
            and (phase is None or self.schedule[0].phase == phase)
        ):
            cmd = self.schedule.pop(0)
            args = dict(cmd.args)
            result = cmd.result if isinstance(cmd.result, dict) else {}
            if cmd.command == "load_checkpoint" and args.get("uuid") in self.translate_uuid:
                args["uuid"] = self.translate_uuid[args["uuid"]]
            if (
                cmd.command == "update_dataset"
                and args.get("action") == "add"
                and isinstance(result.get("stored"), str)
            ):
                # the run's own copy, checked against its hash, never the path as it was given
                from .dataset_updates import stored_path

                try:
                    args["path"] = str(stored_path(self.source_dir, result["stored"]))
                except CommandError as e:
                    raise ResumeFailed(f"update_dataset at step {cmd.step}: {e}") from None
            new = Command(cmd.command, args, source="replay", phase=cmd.phase)
            self._set_status(new, "requested")
            self._set_status(new, "pending")
            self._apply(new, True)
            if new.status != "success":  # what succeeded once must succeed again, or the run is not the same
                raise ResumeFailed(f"re-applying {cmd.command} (step {cmd.step}, {cmd.branch}) failed: {new.reason}")
            if (
                cmd.command == "load_checkpoint"
                and isinstance(result.get("branch"), str)
                and self.branch != result["branch"]
            ):
                # a resume knows the branch names of the crashed segment: keep the original name
                self.known_branches.discard(self.branch)
                self.branch = result["branch"]
                self.known_branches.add(self.branch)
                self._paused_for = {(self.branch, e) for e in self.config.pause_at if e <= self.epoch}
            if cmd.command == "load_checkpoint":
                self._paused_for |= self._completed_pauses

    # ------------------------------------------------------------------ pause

    def _pause(self, reason: str) -> None:
        self.paused = True
        self.pause_reason = reason
        info = PauseInfo(
            epoch=self.epoch + 1,
            step=self.step,
            reason=reason,
            done=self._pause_done.pop((self.branch, self.epoch + 1), []),
        )
        self.journal.write("paused", epoch=info.epoch, step=self.step, branch=self.branch, reason=reason)
        self.events.emit("paused", epoch=info.epoch, step=self.step, reason=reason, branch=self.branch)
        if self.schedule:
            self._apply_schedule()
        if self.replaying:  # the original resumed here; what it did while paused was just re-applied
            self.paused = False
        elif self.pause_handler is not None and not self.stop_requested:
            self.pause_handler(self, info)
        while self.paused and not self.stop_requested:
            self._check_signal()
            try:
                cmd = self._next_command(timeout=0.05)
            except queue.Empty:
                continue
            self._apply(cmd, True)
        if self.stop_requested:  # a stop ends the pause without completing it: a resume must pause here again
            self.journal.write("stopped_while_paused", epoch=self.epoch + 1, step=self.step, branch=self.branch)
        else:
            self.journal.write("resumed", epoch=self.epoch + 1, step=self.step, branch=self.branch)
            self.events.emit("resumed", epoch=self.epoch + 1, step=self.step, branch=self.branch)

    # ------------------------------------------------------------------ the step

    def _train_step(self, idx: torch.Tensor) -> torch.Tensor:
        x = self._prep(self.train_x[idx], augment=True)
        return self.train_step(x, self.train_y[idx], idx)

    def _new_epoch_progress(self) -> EpochProgress:
        order = self._epoch_order()
        bs = self.config.batch_size
        assert bs is not None  # resolved()
        n_steps = max(1, order.numel() // bs)
        return EpochProgress(
            order=order, pos=0, n_steps=n_steps, totals=torch.zeros(len(STEP_STATS), dtype=torch.float64)
        )

    def _flush_stats(self) -> torch.Tensor | None:
        """Move the pending per-step stats off the device in one sync and add them to the epoch totals."""
        if not self._pending:
            return None
        stats = torch.stack(self._pending).double().cpu()
        self._pending.clear()
        if self._ep is not None:
            self._ep.totals += stats.sum(dim=0)
        return stats

    def _train_epoch(self) -> dict[str, float] | None:
        """Train the current epoch to its end; None if it was abandoned (checkpoint loaded) or stopped."""
        self.model.train()
        if self._ep is None:
            self._ep = self._new_epoch_progress()
        ep = self._ep
        order = ep.order.to(self.device)
        bs = self.config.batch_size
        assert bs is not None  # resolved()
        while ep.pos < ep.n_steps:
            self._process_commands(at_epoch_boundary=False)
            if self.paused:
                self._pause(self.pause_reason)
            if self._ep is not ep:  # a checkpoint was loaded: continue from its position instead
                return None
            if self.stop_requested:
                return None
            t0 = time.perf_counter()
            idx = order[ep.pos * bs : (ep.pos + 1) * bs]
            self._pending.append(self._train_step(idx))
            self.step += 1
            ep.pos += 1
            ep.seen += idx.numel()
            if len(self._pending) >= self.report_every or ep.pos == ep.n_steps:
                stats = self._flush_stats()
                assert stats is not None  # a step was just added
                ep.seconds += time.perf_counter() - t0
                last = stats[-1]
                self.events.emit(
                    "step",
                    epoch=self.epoch + 1,
                    step=self.step,
                    steps_in_epoch=ep.n_steps,
                    index_in_epoch=ep.pos,
                    loss=float(last[0]),
                    grad_norm=float(last[7]),
                    images_per_s=ep.seen / max(ep.seconds, 1e-9),
                    lr=self.optimizer.param_groups[0]["lr"],
                    grad_norms=stats[:, 7].tolist(),
                )
                if not torch.isfinite(stats[:, :8]).all():
                    self._nonfinite = True
                    self.paused = True
                    self.pause_reason = (
                        f"the loss or gradient became non-finite (NaN or inf) by step {self.step}; "
                        "lower the learning rate, clip gradients or load a checkpoint"
                    )
                    self.events.emit("log", level="error", message=self.pause_reason)
            else:
                ep.seconds += time.perf_counter() - t0
        m = {f"train_{k}": float(ep.totals[j] / ep.n_steps) for j, k in enumerate(STEP_STATS[:8])}
        m["train_accuracy"] = float(ep.totals[8] / max(ep.seen, 1))
        m["epoch_seconds"] = ep.seconds
        m["images_per_s"] = ep.seen / max(ep.seconds, 1e-9)
        self._ep = None
        return m

    # ------------------------------------------------------------------ evaluation and views

    @torch.no_grad()
    def _forward_all(
        self, x: torch.Tensor, batch: int = 1024, batch_stats: bool = False, between: Callable[[], None] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and features of ``x`` without dropout. With ``batch_stats``, batch norm normalises with each
        chunk's own statistics, as in a training step (running statistics are left untouched). ``between`` is
        called after each chunk (the end-of-epoch work applies settings commands there)."""
        was = self.model.training
        self.model.eval()
        saved = []
        if batch_stats:
            for m in self.model.modules():
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    saved.append(
                        (m, m.momentum, m.num_batches_tracked.clone() if m.num_batches_tracked is not None else None)
                    )
                    m.train()
                    m.momentum = 0.0
        n = x.shape[0]
        chunks = max(1, -(-n // batch))
        size = -(-n // chunks)  # near-equal chunks: no small last batch with noisy statistics
        logits, feats = [], []
        try:
            for i in range(0, n, size):
                with self.autocast:
                    lo, fe = self.model(self._prep(x[i : i + size], augment=False))
                logits.append(lo.float())
                feats.append(fe.float())
                if between is not None:
                    between()
        finally:
            for m, mom, nbt in saved:
                m.momentum = mom
                if nbt is not None:
                    m.num_batches_tracked.copy_(nbt)  # type: ignore[union-attr]  # it was a tensor when saved
            self.model.train(was)
        return torch.cat(logits), torch.cat(feats)

    def evaluate(self, split: str = "val", between: Callable[[], None] | None = None) -> dict[str, Any]:
        x, y = (self.val_x, self.val_y) if split == "val" else (self.test_x, self.test_y)
        k = self.data.num_classes
        if y.numel() == 0:
            return {f"{split}_accuracy": float("nan"), f"{split}_loss": float("nan")}
        logits, _ = self._forward_all(x, between=between)
        pred = logits.argmax(dim=1)
        conf = torch.bincount(y * k + pred, minlength=k * k).view(k, k).cpu()
        per_class = conf.diag().double() / conf.sum(dim=1).clamp(min=1).double()
        return {
            f"{split}_accuracy": float((pred == y).float().mean()),
            f"{split}_loss": float(F.cross_entropy(logits, y)),
            f"{split}_per_class_accuracy": per_class.tolist(),
            f"{split}_confusion": conf.tolist(),
        }

    def view_features(self, between: Callable[[], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Penultimate features of the view set as the training step sees them, and the model's predictions.

        The features are taken with batch-norm batch statistics (dropout off): the HILL loss acts on
        training-mode features, and early in training the running statistics lag far behind (after
        epoch 1 on digits the view radius differs 2x), so targets taken in eval mode sent the loss chasing
        a layout the step never produces. Predictions are the model's own, in eval mode.
        """
        x = self.train_x[self._view_idx_t]
        _, feats = self._forward_all(x, batch_stats=True, between=between)
        logits, _ = self._forward_all(x, between=between)
        return feats.cpu().numpy(), logits.argmax(dim=1).cpu().numpy()

    def view_points(self, between: Callable[[], None] | None = None) -> ViewPoints:
        """The view set's features, predictions and positions through the frozen map, as the model stands."""
        assert self.projection is not None  # fitted after epoch 1
        feats, preds = self.view_features(between)
        return ViewPoints(feats, preds, self.projection(torch.from_numpy(feats)).numpy())

    def snapshot(self, kind: str = "epoch", points: ViewPoints | None = None) -> dict[str, Any] | None:
        """Project the view set through the frozen map; emit it and (at pauses) store it in HDF5.
        ``points`` (from :meth:`view_points`, same model state) saves computing them again."""
        if self.projection is None:
            return None
        _, preds, z = points or self.view_points()
        snap = {
            "epoch": self.epoch,
            "step": self.step,
            "branch": self.branch,
            "z": z.astype(np.float32),
            "labels": self.view_labels,
            "preds": preds,
            "kind": kind,
            "layout": None if self.layout is None else self.layout.to_json(),
        }
        if self.layout is not None:
            now = layout_from_points(z, self.view_labels, self.data.num_classes)
            snap["target_distance"] = np.linalg.norm(now.centers - self.layout.centers, axis=1).tolist()
        if kind != "epoch":
            self.snapshots.write_snapshot(snap, self.view_idx)
        self.events.emit("snapshot", **snap)
        return snap

    def current_layout(self, points: ViewPoints | None = None) -> TargetLayout:
        """The layout as the model stands now (fresh features), the base that edits apply to, with its loss
        space (distances in units of the features' RMS radius)."""
        feats, _, z = points or self.view_points()
        layout = layout_from_points(z, self.view_labels, self.data.num_classes)
        radius = float(np.sqrt(((feats - feats.mean(axis=0)) ** 2).sum(axis=1).mean()))
        assert self.projection is not None  # fitted after epoch 1
        return with_metric(layout, z, self.view_labels, self.projection.weight.cpu().numpy(), radius)

    def fit_projection(self, method: str | None = None, between: Callable[[], None] | None = None) -> Projection:
        feats, _ = self.view_features(between)
        self.projection = fit_projection(
            feats,
            self.view_labels,
            method or self.config.projection,  # type: ignore[arg-type]  # checked
            epoch=self.epoch,
        ).to(self.device)
        self.snapshots.write_projection(self.projection)
        self.journal.write(
            "projection_fitted", method=self.projection.method, epoch=self.epoch, step=self.step, branch=self.branch
        )
        return self.projection

    def commit_layout(self, layout: TargetLayout | None) -> None:
        self.layout = layout
        self.targets = (
            None if layout is None else layout.to_tensors(self.view_idx, self.n_train, self.device, self.weights)
        )

    # ------------------------------------------------------------------ checkpoints

    def checkpoint_state(self) -> dict[str, Any]:
        self._flush_stats()
        state = {
            "format": "hill-app/1",
            "model_name": self.config.model,
            "dataset": self.config.dataset,
            "num_classes": self.data.num_classes,
            "input_shape": list(self.data.input_shape),
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "projection": None if self.projection is None else self.projection.state_dict(),
            "layout_json": None if self.layout is None else json.dumps(self.layout.to_json()),
            "alpha": self.alpha,
            "lam": self.lam,
            "grad_clip": self.grad_clip,
            "epoch": self.epoch,
            "step": self.step,
            "branch": self.branch,
            "rng_cpu": torch.get_rng_state(),
            "rng_gen": self.gen.get_state(),
            "active": self.active.clone(),
            "class_weights": self.class_weights,
            "frozen": [n for n, p in self.model.named_parameters() if not p.requires_grad],
            "epoch_progress": None if self._ep is None else self._ep.to_state(),
            "added_files": list(self.added_files),
            "edits_applied": self.edits_applied,
            "wall_seconds": self._wall + self._segment_seconds(),
            "journal_seq": self.journal.seq,  # the records before this checkpoint: a resume needs them all
        }
        self.journal.sync()  # so they are on the disk before the checkpoint that counts them
        if self.device.type == "cuda":
            state["rng_cuda"] = torch.cuda.get_rng_state(self.device)
        return state

    def save_checkpoint(self, note: str = "") -> dict[str, Any]:
        state = self.checkpoint_state()
        node = self.tree.add(
            state,
            branch=self.branch,
            parent=self.parent_ckpt,
            step=self.step,
            epoch=self.epoch,
            metrics={k: v for k, v in self.last_metrics.items() if isinstance(v, (int, float))},
            note=note,
            journal_seq=state["journal_seq"],
        )
        self.parent_ckpt = node["uuid"]
        self.journal.write("checkpoint", **node)
        self.events.emit("checkpoint", **node)
        return node

    def restore_state(self, state: dict[str, Any]) -> None:
        """Load a checkpoint's state into this session (same model and data set, else CheckpointError)."""
        from .checkpoints import CheckpointError

        if (
            state.get("model_name") != self.config.model
            or state.get("num_classes") != self.data.num_classes
            or list(state.get("input_shape", [])) != list(self.data.input_shape)
        ):
            raise CheckpointError(
                f"checkpoint is for model {state.get('model_name')!r} with {state.get('num_classes')} classes and "
                f"input {state.get('input_shape')}; this run has {self.config.model!r}, "
                f"{self.data.num_classes} classes, input {list(self.data.input_shape)}"
            )
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as e:
            raise CheckpointError(f"checkpoint does not fit this model: {e}") from e
        frozen = set(state.get("frozen", []))
        for n, p in self.model.named_parameters():
            p.requires_grad_(n not in frozen)
        self.projection = (
            None if state["projection"] is None else Projection.from_state_dict(state["projection"]).to(self.device)
        )
        self.commit_layout(
            None if state["layout_json"] is None else TargetLayout.from_json(json.loads(state["layout_json"]))
        )
        self.alpha, self.lam, self.grad_clip = state["alpha"], state["lam"], state["grad_clip"]
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        torch.set_rng_state(state["rng_cpu"])
        self.gen.set_state(state["rng_gen"])
        if "rng_cuda" in state and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng_cuda"], self.device)
        from .dataset_updates import sync_added_files

        sync_added_files(self, list(state.get("added_files", [])))
        self.active = state["active"].clone()
        self.class_weights = state["class_weights"]
        self._pending.clear()
        self._ep = EpochProgress.from_state(state.get("epoch_progress"))
        self.train_step.invalidate()

    def _pick_checkpoint(self, plan: ResumePlan) -> tuple[dict[str, Any] | None, dict[str, Any] | None, list[str]]:
        """The newest checkpoint that loads and fits (a missing, truncated or corrupt newer one is skipped, and
        said so), restored into this session. None when the run has no checkpoint yet."""
        from .checkpoints import CheckpointError

        notes: list[str] = []
        jpath = self.run_dir / "journal.jsonl"
        for node in reversed(plan.tree.nodes):
            try:
                state = plan.tree.load(node["uuid"])
                check_journal_length(jpath, len(plan.records), state.get("journal_seq"), node["uuid"])
                self.restore_state(state)
            except (CheckpointError, CommandError) as e:
                notes.append(
                    f"checkpoint {node['uuid'][:8]} (epoch {node.get('epoch')}, step {node.get('step')}) "
                    f"cannot be used: {e}"
                )
                continue
            if notes:
                notes[-1] += f"; resuming from the newest one that loads, {node['uuid'][:8]} (epoch {node['epoch']})"
            return state, node, notes
        if plan.tree.nodes:
            raise CheckpointError(
                f"{self.tree.folder}: none of the run's {len(plan.tree.nodes)} checkpoints can be "
                f"loaded ({notes[0]}); the run cannot be continued"
            )
        return None, None, notes

    def _resume_from(
        self,
        plan: ResumePlan,
        state: dict[str, Any] | None,
        node: dict[str, Any] | None,
        notes: list[str],
        cleaned: list[str],
    ) -> None:
        """Continue after a crash: from the checkpoint restored by :meth:`_pick_checkpoint`, re-apply at their
        steps the commands that took effect after it, so the run goes on exactly as it would have. With no
        checkpoint yet, start over from the seed and re-apply everything."""
        records = plan.records
        if node is not None and state is not None:
            self.branch, self.parent_ckpt = node["branch"], node["uuid"]
            self.edits_applied = int(state.get("edits_applied", 0))
            self._wall = float(state.get("wall_seconds", 0.0))
        self.known_branches |= {r["branch"] for r in records if isinstance(r.get("branch"), str)}
        seq = None if state is None else state.get("journal_seq", node.get("journal_seq") if node else None)
        self.schedule = effective_commands(
            records, after_checkpoint=node["uuid"] if node else None, after_seq=seq if node else 0
        )
        self._completed_pauses = completed_pauses(records)
        self._paused_for = set(self._completed_pauses)
        self._pause_done = interrupted_pauses(records)
        if node is not None and not any(
            r.get("type") == "checkpoint" and r.get("uuid") == node["uuid"] for r in records
        ):
            # killed between the checkpoint file and its journal record: the record is written now, in place
            self.journal.write("checkpoint", **node)
        for n in notes:
            self.events.emit("log", level="warning", message=n)
        extra: dict[str, Any] = {"notes": notes} if notes else {}
        if cleaned:
            extra["removed_temp_files"] = cleaned
        self.journal.write(
            "resumed_after_crash",
            checkpoint=node["uuid"] if node else None,
            journal_seq=seq if node else 0,
            epoch=self.epoch,
            step=self.step,
            branch=self.branch,
            reapply=len(self.schedule),
            **extra,
        )

    # ------------------------------------------------------------------ the run

    def _end_of_epoch(self, train_metrics: dict[str, float]) -> None:
        self.epoch += 1
        m: dict[str, Any] = {"epoch": self.epoch, "step": self.step, "branch": self.branch, **train_metrics}
        # what the epoch trained with, read before a settings command below can change it
        m["lr"] = self.optimizer.param_groups[0]["lr"]
        m["alpha"], m["lam"] = self.alpha, self.lam
        self.in_end_of_epoch = True
        # once per epoch, and once the view exists (a command such as set_latent_targets needs it), a step
        # command arriving now is applied at once and the evaluation starts again
        self._restart_ok = self.projection is not None
        try:
            while True:
                self._settings_open = not self._held
                try:
                    self._settings_point()
                    m.update(self.evaluate("val", between=self._settings_point))
                    if self.projection is None and self.epoch >= 1:
                        self.fit_projection(between=self._settings_point)
                    next_pause = (self.epoch + 1) in self.config.pause_at and self.epoch < self.config.epochs
                    points = self.view_points(between=self._settings_point) if self.projection is not None else None
                    break
                except _MeasureAgain:
                    self._restart_ok = False
                    self._apply_held_during_end_of_epoch()
        finally:
            self._settings_open = self._restart_ok = False
        snap = self.snapshot("pause" if next_pause else "epoch", points)
        if snap is not None and "target_distance" in snap:
            m["target_distance"] = snap["target_distance"]
        self.last_metrics = m
        self.journal.write("epoch", **m)
        self.events.emit("epoch", **m)
        every = self.config.checkpoint_every
        if next_pause or (every and self.epoch % every == 0):
            self.save_checkpoint(note="pause" if next_pause else "periodic")
        self.in_end_of_epoch = False

    def run(self) -> dict[str, Any]:
        """Train to the end (or a stop), then evaluate on test and write summary.json."""
        self._t_start = time.perf_counter()
        try:
            while self.epoch < self.config.epochs and not self.stop_requested:
                nxt = self.epoch + 1
                self._process_commands(at_epoch_boundary=True)
                if self.stop_requested:  # e.g. a signal at the epoch boundary: no pause to enter
                    break
                if (
                    self._ep is None
                    and nxt in self.config.pause_at
                    and not self.replaying
                    and (self.branch, nxt) not in self._paused_for
                ):
                    self._paused_for.add((self.branch, nxt))
                    self.paused = True
                    self.pause_reason = f"scheduled pause before epoch {nxt}"
                if self.paused:
                    where = (self.branch, self.epoch)
                    self._pause(self.pause_reason)
                    if self.stop_requested:
                        break
                    if (self.branch, self.epoch) != where:  # a checkpoint was loaded: its own pauses apply
                        continue
                    self._process_commands(at_epoch_boundary=True)
                m = self._train_epoch()
                if m is not None:
                    self._end_of_epoch(m)
        except BaseException as e:
            msg = f"{type(e).__name__}: {e}"
            self.events.emit("error", message=msg, traceback=traceback.format_exc())
            self.error_recorded = False
            try:  # a full disk may refuse this record too: the original error is the one to report
                if not self.journal.closed:
                    self.journal.write(
                        "error",
                        message=msg,
                        epoch=self.epoch,
                        step=self.step,
                        branch=self.branch,
                        traceback=traceback.format_exc(),
                    )
                    self.error_recorded = True
            except OSError:
                pass
            self.close()
            raise
        self._wall += self._segment_seconds()
        self._t_start = None
        try:
            return self._finish()
        except BaseException:
            self.close()
            raise

    def position(self) -> str:
        """Where training stands, for a message: 'at epoch 3, step 40' or 'at the end of epoch 2 (step 36)'."""
        if self.in_end_of_epoch:
            return f"at the end of epoch {self.epoch} (step {self.step})"
        return f"at epoch {self.epoch + 1}, step {self.step}"

    def _segment_seconds(self) -> float:
        return 0.0 if self._t_start is None else time.perf_counter() - self._t_start

    def _finish(self) -> dict[str, Any]:
        self._process_commands(at_epoch_boundary=True)
        node = self.save_checkpoint(note="final")
        stop: dict[str, Any] | None = None
        if self.stop_requested:
            stop = {
                "cause": self.stop_cause or "command",
                "reason": self.stop_reason or "stop requested",
                "epoch": self.epoch + 1 if self.epoch < self.config.epochs else self.epoch,
                "step": self.step,
                "branch": self.branch,
            }
            self.journal.write("stopped", checkpoint=node["uuid"], **stop)
        test = self.evaluate("test")
        val = self.evaluate("val")
        summary = {
            "test_accuracy": test["test_accuracy"],
            "val_accuracy": val["val_accuracy"],
            "test_per_class_accuracy": test.get("test_per_class_accuracy"),
            "epochs": self.epoch,
            "steps": self.step,
            "edits_applied": self.edits_applied,
            "wall_seconds": self._wall,
            "stopped_early": self.epoch < self.config.epochs,
            "branch": self.branch,
            "device": str(self.device),
            "seed": self.config.seed,
            "alpha": self.alpha,
            "lam": self.lam,
            "dataset": self.config.dataset,
            "model": self.config.model,
            "events_dropped": self.events.dropped,
            "stop": stop,
        }
        from .files import atomic_write_text

        atomic_write_text(self.run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
        self.journal.write("finished", **{k: v for k, v in summary.items() if k != "test_per_class_accuracy"})
        self.events.emit("finished", **summary)
        self.finished = True
        self.close()
        return summary

    # ------------------------------------------------------------------ conveniences for callers

    def commit_edits(self, edits: list[dict], source: str = "user") -> Command:
        return self.submit("set_latent_targets", {"edits": edits}, source=source)

    def apply_edits_to_current(self, edits: list[dict], points: ViewPoints | None = None) -> TargetLayout:
        """Validate edits and build the teacher layout they describe, on the model as it stands now."""
        from hill_app.losses import validate_edit

        if self.projection is None:
            raise CommandError("no projection yet: edits are possible once epoch 1 has run")
        if not isinstance(edits, list):
            raise CommandError("set_latent_targets: 'edits' must be a list of edit objects")
        clean = [
            validate_edit(e, self.data.num_classes, len(self.view_idx), where=f"edits[{i}]")
            for i, e in enumerate(edits)
        ]
        return apply_edits(self.current_layout(points), clean)
