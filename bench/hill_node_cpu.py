"""Where the HILL step's extra time goes on a CPU: the loss node's forward and backward timed inside real
training steps, and the step with and without the HILL terms, interleaved in one process.

    OMP_NUM_THREADS=1 python bench/hill_node_cpu.py            # digits, about 30 s
    OMP_NUM_THREADS=1 python bench/hill_node_cpu.py --rounds 60

Both CPU kernels of the node (the C kernel and numpy) are timed, interleaved with the plain step. Inside a
step the node's numpy calls run with caches the model's forward pass has just filled, so they cost
several times what the same calls cost in a loop (docs/speed.md): this times them where they run. The same
edits as bench/engine_overhead.py are committed after epoch 1.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from engine_overhead import edits_for  # noqa: E402

from hill_app.engine.config import RunConfig  # noqa: E402
from hill_app.engine.session import TrainingSession  # noqa: E402
from hill_app.losses import hill_native  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=40, help="interleaved rounds of one epoch per arm")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    hl = importlib.import_module("hill_app.losses.hill_loss")
    with tempfile.TemporaryDirectory() as d:
        s = TrainingSession(RunConfig(dataset="digits", epochs=5, pause_at=[], device="cpu", seed=0), Path(d))
        s._end_of_epoch(s._train_epoch())  # fits the projection
        cmd = s.submit("set_latent_targets", {"edits": edits_for(len(s.view_idx))})
        s._process_commands(True)
        if cmd.status != "success":
            print(f"the edits were refused: {cmd.reason}", file=sys.stderr)
            return 1
        order = torch.randperm(s.n_train, generator=torch.Generator().manual_seed(0))
        bs = s.config.batch_size
        assert bs is not None
        batches = [order[i * bs : (i + 1) * bs] for i in range(s.n_train // bs)]
        kernels = ["native", "numpy"] if hill_native.available()[0] else ["numpy"]
        if not hill_native.available()[0]:
            print(f"the C kernel is not available: {hill_native.available()[1]}", file=sys.stderr)
        node: dict[str, list[float]] = {f"{k} {p}": [] for k in kernels for p in ("forward", "backward")}
        fn = hl._HillLossCpu
        fwd, bwd = fn.forward, fn.backward

        def timed(f, part):
            def call(*args):
                t = time.perf_counter()
                out = f(*args)
                node[f"{s.hill_cpu_kernel} {part}"].append(time.perf_counter() - t)
                return out

            return staticmethod(call)

        fn.forward, fn.backward = timed(fwd, "forward"), timed(bwd, "backward")
        alpha = s.alpha
        arms = ["plain", *kernels]
        epoch: dict[str, list[float]] = {arm: [] for arm in arms}
        for r in range(a.rounds):
            for arm in arms[r % len(arms) :] + arms[: r % len(arms)]:  # the order rotates every round
                s.alpha = alpha if arm != "plain" else 0.0
                s.hill_cpu_kernel = arm if arm != "plain" else kernels[0]
                t = time.thread_time()
                for idx in batches:
                    s._train_step(idx)
                epoch[arm].append(time.thread_time() - t)
        s.alpha = alpha
        fn.forward, fn.backward = fwd, bwd
        passes = {k: cold_and_warm(s, batches, hl, k) for k in kernels}
        s.close()
    p = statistics.median(epoch["plain"])
    n = len(batches)
    print(
        f"digits, batch {bs}, {n} steps an epoch, {a.rounds} interleaved rounds, {a.threads} thread(s), thread CPU time"
    )
    print(f"  step: plain {p / n * 1e3:.3f} ms")
    for k in kernels:
        h = statistics.median(epoch[k])
        print(f"  HILL, {k} kernel: {h / n * 1e3:.3f} ms, HILL/plain {h / p:.3f}, extra {(h - p) / n * 1e6:.0f} us")
    print("  the node in the step, wall:")
    for key, v in node.items():
        print(f"    {key:16s} median {statistics.median(v) * 1e6:.1f} us (n={len(v)})")
    print("  the node's arithmetic (terms and d loss / dx) three times in a row inside the step, wall:")
    for k, kp in passes.items():
        print(f"    {k:7s}" + "".join(f"  pass {i + 1} {statistics.median(v) * 1e6:.1f} us" for i, v in enumerate(kp)))
    return 0


def cold_and_warm(s: TrainingSession, batches: list, hl, kernel: str) -> list[list[float]]:
    """The node's forward arithmetic run three times where the node runs (right after the model's forward): the
    first pass pays for the caches the forward pass filled, the later ones show the same calls warm."""
    passes: list[list[float]] = [[], [], []]
    fwd = hl._HillLossCpu.forward
    s.hill_cpu_kernel = kernel

    def thrice(ctx, ce, x, y, idx, alpha, lam, w, full, consts):
        coef = (alpha * w.center, alpha * w.spread, alpha * w.sep, alpha * w.point, 0.0, lam)
        for times in passes:
            t = time.perf_counter()
            if kernel == "native":
                hill_native.terms_grad(x.detach(), y, idx, consts, coef)
            else:
                hl._grad_numpy(hl._terms_numpy(x, y, idx, consts)[1], coef)
            times.append(time.perf_counter() - t)
        return fwd(ctx, ce, x, y, idx, alpha, lam, w, full, consts)

    hl._HillLossCpu.forward = staticmethod(thrice)
    try:
        for _ in range(10):
            for idx in batches:
                s._train_step(idx)
    finally:
        hl._HillLossCpu.forward = fwd
    return passes


if __name__ == "__main__":
    sys.exit(main())
