"""What the engine costs: its epoch against a bare PyTorch loop, and a HILL epoch against a plain one.

    python bench/engine_overhead.py                       # CPU (digits) and, where there is one, the GPU
    python bench/engine_overhead.py --device cuda --compile
    python bench/engine_overhead.py --device cpu --epochs 5

For each device it prints, side by side from one run:

(a) the engine's plain epoch (``TrainingSession._train_epoch`` with no edits) against a bare loop a user would
    write: the same network class, batch size, data resident on the device, normalisation and flip_crop
    augmentation, optimiser, bf16 autocast and channels_last (on CUDA), and one sync per epoch;
(b) the engine's HILL epoch (edits committed through ``submit('set_latent_targets', ...)`` after epoch 1 fitted
    the projection) against the engine's plain epoch.

GPU targets: (a) <= 1.10, (b) <= 1.05; on a CPU (b) <= 1.05 (issue 11). CPU: digits (sklearn) with digits_cnn;
GPU: 50,000 synthetic CIFAR-10-shaped images (uint8, 3x32x32) with airbench, flip_crop augmentation, batch 1000.

Engine modes: ``eager`` (plain PyTorch, the default config), ``graphs`` (eager kernels, the whole step captured
in one CUDA graph), ``compiled`` (``config.compile``: the loss compiled with torch.compile, and on CUDA the
whole step in one CUDA graph). The bare loop is eager in every mode (``--bare-compile``: torch.compile(model)
in the compiled mode).
Every variant's epochs are interleaved (the order rotates every round) and the medians reported, so
background load does not bias one side.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from hill_app.datasets import load_dataset
from hill_app.datasets.augment import flip_crop
from hill_app.datasets.synthetic import load_synthetic
from hill_app.engine.config import RunConfig
from hill_app.engine.models import build_model
from hill_app.engine.session import TrainingSession

TARGET_A = 1.10
TARGET_B = 1.05


def edits_for(view_size: int) -> list[dict]:
    """A realistic commit: a strategy, one separation, one moved class and a dragged selection of points."""
    pts = list(range(0, min(view_size, 80), 4))
    return [
        {"op": "strategy", "name": "compactness", "strength": 0.5},
        {"op": "separate", "classes": [0, 1], "min_distance": 1.0},
        {"op": "move_center", "class": 2, "to": [0.6, -0.4]},
        {"op": "move_points", "indices": pts, "to": [0.0, 0.8]},
    ]


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


class BareLoop:
    """The loop a user writes by hand: no commands, no events, no stats but the loss, one sync an epoch."""

    def __init__(
        self,
        bundle,
        model_name: str,
        device: torch.device,
        batch_size: int,
        lr: float,
        momentum: float,
        weight_decay: float,
        compile: bool,
        seed: int = 0,
    ):
        torch.manual_seed(seed)
        cuda = device.type == "cuda"
        self.dev, self.bs, self.cuda = device, batch_size, cuda
        self.x, self.y = bundle.train_x.to(device), bundle.train_y.to(device)
        shape = (1, -1) + (1,) * (bundle.train_x.dim() - 2)
        self.mean = bundle.mean.to(device).view(shape).float()
        self.std = bundle.std.to(device).view(shape).float()
        self.augment = bundle.augment == "flip_crop"
        self.model = build_model(model_name, bundle.input_shape, bundle.num_classes).to(device)
        if cuda and bundle.kind == "image":
            self.model = self.model.to(memory_format=torch.channels_last)
        self.channels_last = cuda and bundle.kind == "image"
        self.opt = torch.optim.SGD(
            self.model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=momentum > 0
        )
        self.forward = torch.compile(self.model) if compile else self.model
        self.gen = torch.Generator(device=device).manual_seed(seed)

    def epoch(self) -> float:
        self.model.train()
        n = self.x.shape[0]
        steps = n // self.bs
        order = torch.randperm(n, device=self.dev, generator=self.gen)
        total = torch.zeros((), device=self.dev)
        for i in range(steps):
            idx = order[i * self.bs : (i + 1) * self.bs]
            x = self.x[idx]
            if x.dtype == torch.uint8:
                x = x.float().div_(255.0)
            x = (x - self.mean) / self.std
            if self.augment:
                x = flip_crop(x, pad=2, generator=self.gen)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(self.dev.type, dtype=torch.bfloat16, enabled=self.cuda):
                logits, _ = self.forward(x)
            loss = F.cross_entropy(logits.float(), self.y[idx])
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            total += loss.detach()
        return float(total) / steps


class Problem:
    """The data and network of one device's benchmark."""

    def __init__(self, device: torch.device, batch_size: int | None, n_train: int, lr: float | None = None):
        self.device, self.lr = device, lr
        if device.type == "cpu":
            self.dataset, self.bundle = "digits", load_dataset("digits")
            self.model, self.view_size = "digits_cnn", 0
            self.batch_size = batch_size or 64
            self.describe = "digits (sklearn)"
        else:
            self.dataset = "synthetic"
            self.bundle = load_synthetic(n_train=n_train, n_val=1000, n_test=1000, shape=(3, 32, 32))
            self.bundle.augment = "flip_crop"  # the CIFAR-10 recipe, as cifar10 data gets it
            self.model, self.view_size = "airbench", 2000
            self.batch_size = batch_size or 1000
            self.describe = "synthetic CIFAR-10-shaped uint8 3x32x32"
        self.n_train = self.bundle.train_x.shape[0]
        self.steps = self.n_train // self.batch_size
        self.images = self.steps * self.batch_size

    def config(self, compile: bool) -> RunConfig:
        return RunConfig(
            dataset=self.dataset,
            model=self.model,
            device=str(self.device),
            epochs=1000,
            pause_at=[],
            batch_size=self.batch_size,
            view_size=self.view_size,
            compile=compile,
            seed=0,
            lr=self.lr,
        ).resolved()


class EngineVariant:
    """A session run through its own epoch; ``hill`` commits edits after epoch 1 (which fitted the projection)."""

    def __init__(
        self,
        prob: Problem,
        compile: bool,
        graphs: bool | None,
        hill: bool,
        root: Path,
        setup: Callable[[TrainingSession], None] | None = None,
    ):
        self.nonfinite = 0
        self.s = TrainingSession(prob.config(compile), root, bundle=prob.bundle, pause_handler=self._on_pause)
        self.s.train_step.cuda_graphs = graphs
        if setup is not None:  # before the first step: compile the model, change its precision, ...
            setup(self.s)
        m = self.s._train_epoch()
        self.first = m
        if not all(math.isfinite(v) for k, v in m.items() if k.startswith("train_")):
            raise RuntimeError(f"epoch 1 went non-finite: {m}")
        self.s._end_of_epoch(m)  # epoch 1: fits the frozen projection
        if hill:
            cmd = self.s.submit("set_latent_targets", {"edits": edits_for(len(self.s.view_idx))})
            self.s._process_commands(at_epoch_boundary=True)
            if cmd.status != "success":
                raise RuntimeError(f"committing the edits failed: {cmd.reason}")
            assert self.s.targets is not None

    def _on_pause(self, s: TrainingSession, info) -> None:
        # A benchmark must not block on a non-finite pause: count it and go on (timings stay valid).
        self.nonfinite += 1
        s.paused = False
        s._nonfinite = False

    def epoch(self) -> None:
        self.s._train_epoch()

    @property
    def hyper(self) -> tuple[float, float, float]:
        g = self.s.optimizer.param_groups[0]
        return g["lr"], g["momentum"], g["weight_decay"]


def time_interleaved(
    variants: dict[str, Callable[[], object]],
    warmup: int,
    repeats: int,
    dev: torch.device,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, list[float]]:
    names = list(variants)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(warmup + repeats):
        k = r % len(names)
        for n in names[k:] + names[:k]:
            sync(dev)
            t0 = clock()
            variants[n]()
            sync(dev)
            dt = clock() - t0
            if r >= warmup:
                times[n].append(dt)
    return times


def device_name(dev: torch.device) -> str:
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name}, {torch.get_num_threads()} threads"


def check_compiled(prob: Problem, root: Path, steps: int = 8) -> None:
    """Eager and compiled sessions from the same weights on the same batches, step by step: compiled without
    graphs for ``steps`` steps, then with the whole-step CUDA graph for ``steps`` more."""
    t0 = time.perf_counter()
    eager = TrainingSession(prob.config(False), root / "check-eager", bundle=prob.bundle)
    comp = TrainingSession(prob.config(True), root / "check-comp", bundle=prob.bundle)
    comp.model.load_state_dict(eager.model.state_dict())
    comp.train_step.cuda_graphs = False
    order = eager._epoch_order().to(prob.device)
    bs = prob.batch_size
    print("\n  check: eager vs compiled (same weights, same batches); loss / grad_norm per step", flush=True)
    for i in range(2 * steps):
        if i == steps:
            comp.train_step.cuda_graphs = None
        idx = order[(i % prob.steps) * bs : (i % prob.steps + 1) * bs]
        x = eager._prep(eager.train_x[idx], augment=False)
        a = eager.train_step(x, eager.train_y[idx], idx)
        b = comp.train_step(x, comp.train_y[idx], idx)
        print(
            f"    step {i:2d} eager {float(a[0]):.5f} / {float(a[7]):.4f}   compiled "
            f"{float(b[0]):.5f} / {float(b[7]):.4f}   graphed {comp.train_step.graphed}",
            flush=True,
        )
    for name, sess in (("eager", eager), ("compiled", comp)):
        bad = [
            n
            for n, t in list(sess.model.named_parameters()) + list(sess.model.named_buffers())
            if t.is_floating_point() and not torch.isfinite(t).all()
        ]
        rv = min(float(m.running_var.min()) for m in sess.model.modules() if isinstance(m, torch.nn.BatchNorm2d))
        feats = sess.view_features()[0]
        print(
            f"    {name}: non-finite tensors {bad[:6]}, smallest BN running_var {rv:.3e}, "
            f"view features finite {bool(torch.isfinite(torch.from_numpy(feats)).all())}",
            flush=True,
        )
    err = comp.train_step._graph_error
    print(
        f"  check done in {time.perf_counter() - t0:.0f} s; captures {comp.train_step.captures}"
        + (f", graph error {err}" if err else ""),
        flush=True,
    )
    for x in (eager, comp):
        x.journal.close()


def check_model_compile(prob: Problem, root: Path, steps: int = 3) -> None:
    """Which parameters get non-finite gradients when the model itself is compiled (``compile_model``)."""
    for amp in ("bf16", "off"):
        t0 = time.perf_counter()
        cfg = prob.config(True)
        cfg.amp = amp
        s = TrainingSession(cfg, root / f"model-compile-{amp}", bundle=prob.bundle)
        s.train_step.compile_model, s.train_step.cuda_graphs = True, False
        order = s._epoch_order().to(prob.device)
        for i in range(steps):
            st = s._train_step(order[i * prob.batch_size : (i + 1) * prob.batch_size])
            bad = [n for n, p in s.model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
            print(
                f"  model compiled, amp {amp}: step {i} loss {float(st[0]):.5f} grad_norm {float(st[7]):.4f} "
                f"non-finite grads {bad[:8]}{' ...' if len(bad) > 8 else ''}",
                flush=True,
            )
        print(f"  ({time.perf_counter() - t0:.0f} s)", flush=True)
        s.journal.close()


def run_device(dev: torch.device, args: argparse.Namespace) -> list[str]:
    t_start = time.perf_counter()
    prob = Problem(dev, args.batch_size, args.n_train, args.lr)
    modes = [m for m in args.modes if not (m == "graphs" and dev.type != "cuda")]
    print(f"\n=== {dev.type}: {device_name(dev)} | torch {torch.__version__}", flush=True)
    print(
        f"    data {prob.describe}: {prob.n_train} training images resident on {dev.type}, model {prob.model}, "
        f"batch {prob.batch_size}, {prob.steps} steps/epoch, augment {prob.bundle.augment}, "
        f"{'bf16 autocast + channels_last' if dev.type == 'cuda' else 'fp32'}, SGD lr {prob.config(False).lr}; "
        f"modes {', '.join(modes)}",
        flush=True,
    )
    summary: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="hill-bench-"))
    bares: dict[bool, BareLoop] = {}
    bare_eager_t: float | None = None
    if args.check:
        try:
            check_compiled(prob, root)
        except Exception:  # noqa: BLE001 - a diagnostic: show it and go on to the timings
            traceback.print_exc()
    for mode in modes:
        try:
            line, t = run_mode(prob, mode, args, root, bares, bare_eager_t)
        except Exception:  # noqa: BLE001 - one mode failing must not hide the others' numbers
            traceback.print_exc()
            summary.append(f"  [{dev.type} {mode:>8}] FAILED (traceback above)")
            continue
        if mode == "eager":
            bare_eager_t = t
        summary.append(line)
        gc.collect()
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    if args.check_model_compile:
        try:
            check_model_compile(prob, root)
        except Exception:  # noqa: BLE001 - a diagnostic
            traceback.print_exc()
    print(f"  {dev.type} done in {time.perf_counter() - t_start:.0f} s", flush=True)
    return summary


def run_mode(
    prob: Problem,
    mode: str,
    args: argparse.Namespace,
    root: Path,
    bares: dict[bool, BareLoop],
    bare_eager_t: float | None,
) -> tuple[str, float]:
    """Time one engine mode against its bare loop; return the summary line and the bare loop's median."""
    dev = prob.device
    t0 = time.perf_counter()
    compile = mode == "compiled"
    graphs = {"eager": False, "graphs": True, "compiled": None}[mode]
    plain = EngineVariant(prob, compile, graphs, hill=False, root=root / f"{mode}-plain")
    hill = EngineVariant(prob, compile, graphs, hill=True, root=root / f"{mode}-hill")
    lr, mom, wd = plain.hyper
    bare_c = compile and args.bare_compile
    if bare_c not in bares:
        bares[bare_c] = BareLoop(prob.bundle, prob.model, dev, prob.batch_size, lr, mom, wd, compile=bare_c)
    bare_name = "bare (torch.compile)" if bare_c else "bare (eager)"
    variants: dict[str, Callable[[], object]] = {
        bare_name: bares[bare_c].epoch,
        "engine plain": plain.epoch,
        "engine HILL": hill.epoch,
    }
    # warm-up epochs run through compile, cudnn autotune and the graph capture, untimed
    cpu_clock = args.clock == "cpu" or (args.clock == "auto" and dev.type == "cpu")
    times = time_interleaved(
        variants, args.warmup, args.epochs, dev, time.process_time if cpu_clock else time.perf_counter
    )
    med = {n: statistics.median(v) for n, v in times.items()}
    print(
        f"\n  mode {mode}: {time.perf_counter() - t0:.0f} s including set-up and compile; "
        f"{args.epochs} timed epochs per variant after {args.warmup} warm-up; clock: "
        f"{'process CPU time (robust to other load on a shared machine)' if cpu_clock else 'wall'}",
        flush=True,
    )
    for n, v in med.items():
        spread = times[n]
        rng = f"(min {min(spread):.4f}, max {max(spread):.4f})"
        print(f"    {n:<22} {v:8.4f} s/epoch  {prob.images / v:>11,.0f} images/s  {rng}", flush=True)
    for v, nm in ((plain, "plain"), (hill, "HILL")):
        ts = v.s.train_step
        extra = f", graph error: {ts._graph_error}" if ts._graph_error else ""
        print(
            f"    engine {nm}: epoch 1 train loss {v.first['train_loss']:.4f}, cuda-graph captures "
            f"{ts.captures}, last step graphed {ts.graphed}, non-finite pauses {v.nonfinite}{extra}",
            flush=True,
        )
    bare_t = med[bare_name]
    a = med["engine plain"] / bare_t
    b = med["engine HILL"] / med["engine plain"]

    def verdict(r: float, target: float, on_cpu: bool = False) -> str:
        if dev.type != "cuda" and not on_cpu:
            return f"GPU target <= {target:.2f}; not one on cpu"
        return f"target <= {target:.2f}: {'ok' if r <= target else 'MISSED'}"

    line = (
        f"  [{dev.type} {mode:>8}] (a) engine/bare {a:5.3f} ({verdict(a, TARGET_A)})   "
        f"(b) HILL/plain {b:5.3f} ({verdict(b, TARGET_B, on_cpu=True)})   "
        f"engine plain {prob.images / med['engine plain']:,.0f} img/s, "
        f"HILL {prob.images / med['engine HILL']:,.0f} img/s, bare {prob.images / bare_t:,.0f} img/s"
    )
    if bare_c and bare_eager_t is not None:
        line += f"; engine compiled / bare eager {med['engine plain'] / bare_eager_t:.3f}"
    print(line, flush=True)
    for v in (plain, hill):
        v.s.journal.close()
    return line, bare_t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="all", help="cpu, cuda or all (cpu, plus cuda where there is one)")
    ap.add_argument("--epochs", type=int, default=None, help="timed epochs per variant (cpu 12, cuda 9)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed epochs per variant first (default 2)")
    ap.add_argument("--batch-size", type=int, default=None, help="cpu 64 (digits default), cuda 1000")
    ap.add_argument("--n-train", type=int, default=50000, help="synthetic training images on the GPU")
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads for the CPU part (default 1: digits gains nothing from more, and "
        "oversubscribed busy cores make every variant noisy); 0 keeps torch's default",
    )
    ap.add_argument(
        "--check-model-compile",
        action="store_true",
        help="last, show which gradients go non-finite with the model compiled (bf16 and fp32)",
    )
    ap.add_argument(
        "--check",
        action="store_true",
        help="first compare eager and compiled steps from the same weights, step by step",
    )
    ap.add_argument("--compile", action="store_true", help="also run the compiled mode (config.compile) on CUDA")
    ap.add_argument(
        "--bare-compile",
        action="store_true",
        help="in the compiled mode, time the bare loop with torch.compile(model) instead of eager",
    )
    ap.add_argument("--lr", type=float, default=None, help="learning rate of every variant (default: the config's)")
    ap.add_argument(
        "--clock",
        choices=("auto", "wall", "cpu"),
        default="auto",
        help="what an epoch's time is: wall clock, or this process's CPU time (auto: CPU time on the "
        "CPU, where other processes' load would otherwise decide the ratios; wall on CUDA)",
    )
    ap.add_argument(
        "--modes",
        default=None,
        help="comma list of eager, graphs, compiled (default: eager,graphs on cuda, eager on cpu; "
        "--compile adds compiled)",
    )
    args = ap.parse_args(argv)
    devices = []
    if args.device in ("all", "cpu"):
        devices.append(torch.device("cpu"))
    if args.device in ("all", "cuda") or args.device.startswith("cuda:"):
        if torch.cuda.is_available():
            devices.append(torch.device(args.device if args.device.startswith("cuda:") else "cuda"))
        elif args.device != "all":
            print("no CUDA device here", file=sys.stderr)
            return 2
    if hasattr(torch._dynamo.config, "recompile_limit"):
        torch._dynamo.config.recompile_limit = 64  # several sessions compile the same step functions
    torch._dynamo.config.cache_size_limit = 64
    torch.backends.cudnn.benchmark = True  # as airbench does; the same for every variant
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    summary: list[str] = []
    for dev in devices:
        a = argparse.Namespace(**vars(args))
        if args.modes:
            a.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
        else:
            a.modes = ["eager", "graphs"] if dev.type == "cuda" else ["eager"]
            if args.compile and dev.type == "cuda":  # on a CPU: --modes eager,compiled
                a.modes.append("compiled")
        a.epochs = args.epochs or (12 if dev.type == "cpu" else 9)
        summary += run_device(dev, a)
    print("\nsummary (ratios are median epoch times; targets apply to the GPU):")
    for line in summary:
        print(line)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
