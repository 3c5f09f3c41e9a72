"""CIFAR-10 without a GPU: cifar_cpu_fast against airbench, side by side in one run.

    python bench/cifar_cpu.py speed                       # training images/s on the CPU, 2 threads (~1.5 min)
    python bench/cifar_cpu.py accuracy --device cuda      # the 40-epoch protocol on the real CIFAR-10 subset

``speed`` trains both models through the engine's own epoch (``TrainingSession._train_epoch``) on the same
synthetic CIFAR-10-shaped uint8 images, with the CIFAR-10 recipe of the engine (batch 500, Nesterov SGD lr 0.1,
momentum 0.9, weight decay 5e-4, flip + translate by 2 px), epochs interleaved, and prints training images/s
(wall and process CPU time), the ratio to airbench, forward-only images/s (evaluation and the latent view),
and what the published protocol (40 epochs on 45,000 images, a 5,000-image validation split and a
3,000-image view set each epoch) would take. Target: at least 1,500 training images/s on 2 cores.

``accuracy`` runs the protocol without edits (40 epochs, that recipe) on the real subset
(../shared/data/cifar10-real: 5,551 training images, a tenth held out for validation, 1,017 test images)
for each model and seed and prints the test accuracies.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from hill_app.engine.config import DEFAULTS, RunConfig
from hill_app.engine.session import TrainingSession

MODELS = ("cifar_cpu_fast", "airbench")
TARGET_IPS = 1500.0
REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-real"


def recipe() -> dict:
    """The engine's CIFAR-10 training defaults (hill_app/engine/config.py), stated in one place."""
    d = DEFAULTS["cifar10"]
    return {k: d[k] for k in ("batch_size", "optimizer", "lr", "momentum", "weight_decay")}


def session(model: str, bundle, root: Path, device: str, seed: int = 0, epochs: int = 40) -> TrainingSession:
    cfg = RunConfig(
        dataset="synthetic",
        model=model,
        device=device,
        epochs=epochs,
        pause_at=[],
        seed=seed,
        view_size=min(3000, bundle.train_x.shape[0]),
        compile=False,
        **recipe(),
    )
    return TrainingSession(cfg, root / f"{model}-{seed}", bundle=bundle)


def cmd_speed(a: argparse.Namespace) -> int:
    from hill_app.datasets.synthetic import load_synthetic

    torch.set_num_threads(a.threads)
    root = Path(tempfile.mkdtemp(prefix="hill-cifar-cpu-"))
    bs = recipe()["batch_size"]
    n = {"cifar_cpu_fast": a.images_fast, "airbench": a.images_airbench}
    bundles = {}
    for m in MODELS:
        b = load_synthetic(n_train=n[m], n_val=bs, n_test=bs, shape=(3, 32, 32), seed=0)
        b.augment = "flip_crop"  # as cifar10 data gets it
        bundles[m] = b
    sess = {m: session(m, bundles[m], root, "cpu") for m in MODELS}
    print(f"cpu: {torch.get_num_threads()} threads, torch {torch.__version__}; recipe {recipe()}, flip_crop pad 2")
    wall: dict[str, list[float]] = {m: [] for m in MODELS}
    cpu: dict[str, list[float]] = {m: [] for m in MODELS}
    for r in range(a.warmup + a.epochs):
        order = MODELS if r % 2 == 0 else MODELS[::-1]
        for m in order:
            t0, c0 = time.perf_counter(), time.process_time()
            sess[m]._train_epoch()
            if r >= a.warmup:
                wall[m].append(time.perf_counter() - t0)
                cpu[m].append(time.process_time() - c0)
    ips, ips_cpu, fwd = {}, {}, {}
    for m in MODELS:
        imgs = (n[m] // bs) * bs
        ips[m] = imgs / statistics.median(wall[m])
        ips_cpu[m] = imgs / (statistics.median(cpu[m]) / a.threads)  # per `threads` cores of CPU time
        x = sess[m].train_x[: min(2000, n[m])]
        sess[m]._forward_all(x)  # warm
        t0 = time.perf_counter()
        sess[m]._forward_all(x)
        fwd[m] = x.shape[0] / (time.perf_counter() - t0)
    print(
        f"\n{'model':<16} {'train img/s (wall)':>19} {'(CPU time)':>11} {'forward img/s':>14} "
        f"{'protocol, 45k x 40 epochs':>26}"
    )
    for m in MODELS:
        per_epoch = 45000 / ips[m] + (5000 + 2 * 3000) / fwd[m]  # train, then validation and the view set
        print(f"{m:<16} {ips[m]:>19,.0f} {ips_cpu[m]:>11,.0f} {fwd[m]:>14,.0f} {40 * per_epoch / 60:>21.1f} min")
    r = ips["cifar_cpu_fast"] / ips["airbench"]
    ok = "ok" if ips["cifar_cpu_fast"] >= TARGET_IPS else "MISSED"
    print(
        f"\nsummary: cifar_cpu_fast / airbench training images/s {r:.2f}x (CPU time "
        f"{ips_cpu['cifar_cpu_fast'] / ips_cpu['airbench']:.2f}x); cifar_cpu_fast {ips['cifar_cpu_fast']:,.0f} "
        f"img/s wall (target >= {TARGET_IPS:,.0f}: {ok}), {ips_cpu['cifar_cpu_fast']:,.0f} by CPU time; "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    for s in sess.values():
        s.journal.close()
    return 0


def load_real(root: Path):
    from hill_app.datasets import load_dataset

    try:
        return load_dataset("cifar10", root, val_size=0.1)  # C1 (helper D)
    except TypeError:  # before C1 lands: the loader's own count
        from hill_app.datasets.cifar10 import load_cifar10

        return load_cifar10(root, val_size=555)


def cmd_accuracy(a: argparse.Namespace) -> int:
    root = Path(a.data_root)
    if not root.exists():
        print(f"no real CIFAR-10 subset at {root}; pass --data-root", file=sys.stderr)
        return 2
    if a.threads:
        torch.set_num_threads(a.threads)
    bundle = load_real(root)
    out = Path(tempfile.mkdtemp(prefix="hill-cifar-acc-"))
    print(
        f"real CIFAR-10: {bundle.train_x.shape[0]} train, {bundle.val_x.shape[0]} val, {bundle.test_x.shape[0]} "
        f"test; {a.epochs} epochs, recipe {recipe()}, augment {bundle.augment}; device {a.device}"
    )
    acc: dict[str, list[float]] = {m: [] for m in MODELS}
    for seed in a.seeds:
        for m in MODELS:
            t0 = time.perf_counter()
            s = session(m, bundle, out, a.device, seed=seed, epochs=a.epochs)
            summary = s.run()
            acc[m].append(summary["test_accuracy"])
            print(
                f"  {m:<16} seed {seed}: test {summary['test_accuracy']:.4f}  val {summary['val_accuracy']:.4f}  "
                f"({time.perf_counter() - t0:.0f} s)",
                flush=True,
            )
    print(f"\nsummary (test accuracy on the 1,017 real test images, mean over seeds {','.join(map(str, a.seeds))}):")
    for m in MODELS:
        v = acc[m]
        sd = statistics.stdev(v) if len(v) > 1 else float("nan")
        print(f"  {m:<16} {statistics.mean(v):.4f} (sd {sd:.4f}; {', '.join(f'{x:.4f}' for x in v)})")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sp = sub.add_parser("speed", help="training images/s of both models on the CPU")
    sp.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2: the target machine)")
    sp.add_argument("--images-fast", type=int, default=6000, help="synthetic images per cifar_cpu_fast epoch")
    sp.add_argument("--images-airbench", type=int, default=1500, help="synthetic images per airbench epoch")
    sp.add_argument("--epochs", type=int, default=3, help="timed epochs per model")
    sp.add_argument("--warmup", type=int, default=1)
    sp.set_defaults(fn=cmd_speed)
    ac = sub.add_parser("accuracy", help="the protocol without edits on the real subset")
    ac.add_argument("--data-root", default=str(REAL))
    ac.add_argument("--device", default="auto")
    ac.add_argument("--epochs", type=int, default=40)
    ac.add_argument("--seeds", type=lambda t: [int(x) for x in t.split(",")], default=[0, 1, 2])
    ac.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ac.set_defaults(fn=cmd_accuracy)
    a = ap.parse_args(argv)
    return a.fn(a)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
