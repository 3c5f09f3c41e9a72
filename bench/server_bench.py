"""What the control server costs a training job, and how fast it answers, measured side by side in one run.

    python bench/server_bench.py                  # CPU digits, about 1-2 minutes
    python bench/server_bench.py --repeats 7 --epochs 8 --device cpu

(1) Epoch time of a served digits run against the same run unserved: three arms, interleaved with the order
    rotating every round: ``off`` (no server), ``on0`` (serving, no client), ``on1`` (serving, one client in
    another process subscribed to the native event stream). Medians of the summed ``epoch_seconds`` (the
    training steps) and of the wall time of ``run()``; ratios against ``off``. Goal: at most 1.01.
(2) With training running, from a client in another process on loopback: command round trip (submit, until
    the ``success`` event arrives), alternating ``set_alpha`` (a settings command: it applies at the next
    step boundary or between the batches of the end-of-epoch evaluation) and ``clear_latent_targets`` (a
    step command: arriving during the end-of-epoch evaluation it applies at once and the evaluation starts
    again, once an epoch), and event latency (emitted on the
    training thread to decoded in the client), p50 and p99, of the events sent at once (commands, epochs,
    checkpoints) and of all of them (step metrics are rate-limited per client by design). Goal: p99 under
    20 ms.
(3) A 3,000-point latent snapshot (synthetic 8x8 data, view set of 3,000): emitted to decoded in a
    RemoteRunClient (the event), and a GET /api/v1/snapshot/latest round trip. Goal: under 100 ms.

Clients run in their own process (``--client``), as an agent or an attached window would, so their work does
not share the job's interpreter lock. The training process uses ``--threads`` torch threads (default 1).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


# ------------------------------------------------------------------ client process


def client_main(a: argparse.Namespace) -> int:
    from hill_app.client.remote import RemoteRunClient

    c = RemoteRunClient(a.client, source="script")
    out: dict[str, Any] = {"event_ms": [], "rtt_ms": [], "snapshot_event_ms": [], "snapshot_get_ms": [], "kinds": {}}

    def take() -> list[tuple[str, dict, float, float]]:
        evs = c.poll_timed()
        for k, d, sent, recv in evs:
            out["kinds"][k] = out["kinds"].get(k, 0) + 1
            if k == "snapshot":
                out["snapshot_event_ms"].append((recv - sent) * 1e3)
                out["snapshot_points"] = int(d["z"].shape[0])
            elif k in ("step", "epoch", "command", "checkpoint"):
                out["event_ms"].append((recv - sent) * 1e3)
                out.setdefault("event_ms_by_kind", {}).setdefault(k, []).append((recv - sent) * 1e3)
        return evs

    finished = False
    if a.mode == "latency":
        while c.state()["status"] == "init":
            take()
            time.sleep(0.01)
        kinds = {"set_alpha": {"alpha": 0.5}, "clear_latent_targets": {}}
        by: dict[str, dict[str, list[float]]] = {
            k: {m: [] for m in ("rtt_ms", "accept_ms", "wait_ms", "apply_ms", "deliver_ms")} for k in kinds
        }
        out["by_command"] = by
        for i in range(2 * a.commands):
            name = list(kinds)[i % 2]  # alternate: a settings command and a step command
            r = by[name]
            t0 = time.time()
            uid = c.submit(name, kinds[name])
            t_accept = time.time()
            done, emitted = False, {}
            while not done:
                for k, d, sent, recv in take():
                    if k == "command" and d["uuid"] == uid:
                        emitted[d["status"]] = sent
                        if d["status"] in ("success", "failed"):
                            done, t_recv = True, recv
                    finished |= k == "finished"
                if finished and not done:
                    break
                time.sleep(0.0005)
            if done:
                r["rtt_ms"].append((t_recv - t0) * 1e3)
                r["accept_ms"].append((t_accept - t0) * 1e3)
                if "running" in emitted and "pending" in emitted:
                    r["wait_ms"].append((emitted["running"] - emitted["pending"]) * 1e3)
                    r["apply_ms"].append((emitted["success"] - emitted["running"]) * 1e3)
                r["deliver_ms"].append((t_recv - emitted["success"]) * 1e3)
            if finished:
                break
            time.sleep(a.gap)
    if a.mode == "snapshot":
        while len(out["snapshot_event_ms"]) < a.snapshots and not finished:
            finished = any(k == "finished" for k, *_ in take())
            time.sleep(0.001)
        for _ in range(a.gets):
            t0 = time.perf_counter()
            snap = c.latest_snapshot()
            out["snapshot_get_ms"].append((time.perf_counter() - t0) * 1e3)
            out["snapshot_points"] = int(snap["z"].shape[0])
    while not finished and a.mode == "subscribe":
        finished = any(k == "finished" for k, *_ in take())
        time.sleep(0.02)
    out["dropped"] = c.dropped
    c.close()
    Path(a.out).write_text(json.dumps(out))
    return 0


def spawn_client(run_dir: Path, mode: str, out: Path, **kw: Any) -> subprocess.Popen:
    args = [sys.executable, str(Path(__file__).resolve()), "--client", str(run_dir), "--mode", mode, "--out", str(out)]
    for k, v in kw.items():
        args += [f"--{k}", str(v)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen(args, env=env, cwd=ROOT)


# ------------------------------------------------------------------ training side


def one_run(arm: str, bundle: Any, cfg_kw: dict, tmp: Path, i: int) -> dict[str, float]:
    from hill_app.engine.config import RunConfig
    from hill_app.engine.session import TrainingSession
    from hill_app.server import serve_session

    run_dir = tmp / f"{arm}-{i}"
    s = TrainingSession(RunConfig(**cfg_kw), run_dir, bundle=bundle)
    handle, proc = None, None
    if arm != "off":
        handle = serve_session(s, "127.0.0.1:0")
    if arm == "on1":
        proc = spawn_client(run_dir, "subscribe", tmp / f"{arm}-{i}.json")
        while handle.context.hub.n_clients() < 1:  # type: ignore[union-attr]
            if proc.poll() is not None:
                raise SystemExit("the subscribed client exited before connecting")
            time.sleep(0.01)
    server_tid = handle._thread.native_id if handle is not None else None
    cpu0, srv0 = time.thread_time(), thread_cpu(server_tid)
    t0 = time.perf_counter()
    s.run()
    wall = time.perf_counter() - t0
    cpu, srv = time.thread_time() - cpu0, thread_cpu(server_tid) - srv0
    client_cpu = 0.0
    if proc is not None:
        _, _, usage = os.wait4(proc.pid, 0)
        proc.returncode = 0
        client_cpu = usage.ru_utime + usage.ru_stime
    if handle is not None:
        handle.close()
    epochs = [json.loads(line) for line in (run_dir / "journal.jsonl").read_text().splitlines()]
    # epoch 1 holds compilation, CUDA-graph capture and cudnn autotuning on a GPU: left out of the training time
    train = sum(r["epoch_seconds"] for r in epochs if r.get("type") == "epoch" and r["epoch"] > 1)
    return {"train": train, "wall": wall, "cpu": cpu, "server_cpu": srv, "client_cpu": client_cpu}


def thread_cpu(tid: int | None) -> float:
    """CPU seconds (user + system) of one thread of this process, from /proc (Linux; 0 elsewhere)."""
    if tid is None:
        return 0.0
    try:
        fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_overhead(a: argparse.Namespace, tmp: Path) -> list[str]:
    if a.dataset == "digits":
        from hill_app.datasets import load_dataset

        bundle = load_dataset("digits")
        cfg: dict[str, Any] = {"dataset": "digits"}
    else:  # CIFAR-shaped synthetic images on the airbench net, the GPU workload of bench/gpu_vs_airbench.py
        from hill_app.datasets.synthetic import load_synthetic

        bundle = load_synthetic(n_train=a.n_train, n_val=1000, n_test=1000, shape=(3, 32, 32), seed=0)
        cfg = {"dataset": "synthetic", "model": "airbench", "synthetic_size": a.n_train, "view_size": 3000}
        if a.batch_size:
            cfg["batch_size"] = a.batch_size
    cfg.update(epochs=a.epochs, pause_at=[], device=a.device, seed=0)
    arms = ["off", "on0", "on1"]
    res: dict[str, list[dict[str, float]]] = {k: [] for k in arms}
    one_run("off", bundle, cfg, tmp, -1)  # warm-up (first-touch allocations, lazy imports)
    one_run("on1", bundle, cfg, tmp, -1)
    for i in range(a.repeats):
        order = arms[i % 3 :] + arms[: i % 3]
        for arm in order:
            res[arm].append(one_run(arm, bundle, cfg, tmp, i))
    keys = ("train", "wall", "cpu", "server_cpu", "client_cpu")
    med = {k: {m: statistics.median(r[m] for r in v) for m in keys} for k, v in res.items()}
    best = {k: {m: min(r[m] for r in v) for m in ("train", "wall")} for k, v in res.items()}
    spread = {k: (max(r["train"] for r in v) - min(r["train"] for r in v)) / med[k]["train"] for k, v in res.items()}
    lines = [
        f"(1) epoch time, {a.dataset} ({bundle.train_x.shape[0]} training images) {a.epochs} epochs (epoch 1 left "
        f"out of the training time) x {a.repeats} interleaved rounds (medians; ratio to off)",
        "    arm  training steps        run() wall            training-thread CPU  | min-of-runs ratio  | "
        "server thread CPU, client process CPU (whole life)",
    ]
    for k in arms:
        m, o = med[k], med["off"]
        lines.append(
            f"    {k:4s} {m['train']:.3f} s ratio {m['train'] / o['train']:.3f}   {m['wall']:.3f} s ratio "
            f"{m['wall'] / o['wall']:.3f}   {m['cpu']:.3f} s ratio {m['cpu'] / o['cpu']:.3f} | "
            f"train {best[k]['train'] / best['off']['train']:.3f} "
            f"wall {best[k]['wall'] / best['off']['wall']:.3f}"
            f" | {m['server_cpu']:.2f} s, {m['client_cpu']:.2f} s"
        )
    lines.append(
        "    run-to-run spread of the training time (max - min) / median: "
        + ", ".join(f"{k} {spread[k]:.0%}" for k in arms)
    )
    return lines


def bench_latency(a: argparse.Namespace, tmp: Path) -> list[str]:
    from hill_app.engine.config import RunConfig
    from hill_app.engine.session import TrainingSession
    from hill_app.server import serve_session

    run_dir = tmp / "latency"
    s = TrainingSession(RunConfig(dataset="digits", epochs=400, pause_at=[], device=a.device, seed=0), run_dir)
    h = serve_session(s, "127.0.0.1:0")
    proc = spawn_client(run_dir, "latency", tmp / "latency.json", commands=a.commands, gap=0.02)
    import threading

    t = threading.Thread(target=s.run)
    t.start()
    proc.wait(600)
    s.submit("stop_training", {}, source="script")
    t.join()
    h.close()
    r = json.loads((tmp / "latency.json").read_text())
    ev = r["event_ms"]
    now = [x for k, v in r.get("event_ms_by_kind", {}).items() if k != "step" for x in v]
    lines = [f"(2) loopback, training running (digits, CPU): {a.commands} commands of each kind, {len(ev)} events"]
    for name, what in (
        ("set_alpha", "a settings command, applied also between the batches of the end-of-epoch evaluation"),
        ("clear_latent_targets", "a step command: during the end-of-epoch evaluation, at once, and it restarts"),
    ):
        x = r["by_command"][name]
        rtt = x["rtt_ms"]
        lines += [
            f"    {name} ({what}):",
            f"      command round trip  p50 {pct(rtt, 50):.2f} ms  p99 {pct(rtt, 99):.2f} ms  max {max(rtt):.2f} ms",
            "        of which: "
            + ", ".join(
                f"{label} p50 {pct(x[k], 50):.2f} / p99 {pct(x[k], 99):.2f}"
                for label, k in (
                    ("POST answered", "accept_ms"),
                    ("waiting for the step boundary", "wait_ms"),
                    ("applied + journaled", "apply_ms"),
                    ("success event delivered", "deliver_ms"),
                )
            )
            + " ms",
        ]
    return lines + [
        f"    event latency (command, epoch, checkpoint)  p50 {pct(now, 50):.2f} ms  p99 {pct(now, 99):.2f} ms  "
        f"max {max(now):.2f} ms",
        f"    all events incl. step metrics, which each client gets at most 20 per second (the newest waits for its "
        f"slot, up to 50 ms): p50 {pct(ev, 50):.2f} ms  p99 {pct(ev, 99):.2f} ms",
        "      by kind: "
        + ", ".join(
            f"{k} p50 {pct(v, 50):.2f} / p99 {pct(v, 99):.2f} (n={len(v)})"
            for k, v in sorted(r.get("event_ms_by_kind", {}).items())
        ),
        f"    events dropped for this client: {r['dropped']}",
    ]


def bench_snapshot(a: argparse.Namespace, tmp: Path) -> list[str]:
    from hill_app.datasets.synthetic import load_synthetic
    from hill_app.engine.config import RunConfig
    from hill_app.engine.session import TrainingSession
    from hill_app.server import serve_session

    bundle = load_synthetic(n_train=4000, n_val=500, n_test=500, shape=(1, 8, 8), seed=0)
    run_dir = tmp / "snapshot"
    cfg = RunConfig(
        dataset="synthetic",
        model="digits_cnn",
        view_size=3000,
        synthetic_size=4000,
        epochs=a.snapshots + 1,
        pause_at=[],
        device=a.device,
        seed=0,
    )
    s = TrainingSession(cfg, run_dir, bundle=bundle)
    h = serve_session(s, "127.0.0.1:0")
    proc = spawn_client(run_dir, "snapshot", tmp / "snapshot.json", snapshots=a.snapshots, gets=20)
    while h.context.hub.n_clients() < 1:  # type: ignore[attr-defined]
        time.sleep(0.01)
    s.run()
    proc.wait(300)
    h.close()
    r = json.loads((tmp / "snapshot.json").read_text())
    se, sg = r["snapshot_event_ms"], r["snapshot_get_ms"]
    return [
        f"(3) latent snapshot of {r['snapshot_points']} points to a RemoteRunClient",
        f"    as an event (emitted -> decoded)  p50 {pct(se, 50):.2f} ms  max {max(se):.2f} ms  (n={len(se)})",
        f"    GET /api/v1/snapshot/latest       p50 {pct(sg, 50):.2f} ms  max {max(sg):.2f} ms  (n={len(sg)})",
    ]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--dataset", choices=("digits", "synthetic-cifar"), default="digits", help="part (1) only")
    p.add_argument("--n-train", type=int, default=50000, help="synthetic-cifar: training images")
    p.add_argument("--batch-size", type=int, default=0, help="synthetic-cifar: batch size (0: the default)")
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--commands", type=int, default=300)
    p.add_argument("--snapshots", type=int, default=6)
    p.add_argument("--parts", default="1,2,3")
    # client process
    p.add_argument("--client", help=argparse.SUPPRESS)
    p.add_argument("--mode", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    p.add_argument("--gap", type=float, default=0.02, help=argparse.SUPPRESS)
    p.add_argument("--gets", type=int, default=20, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.client:
        return client_main(a)
    import torch

    torch.set_num_threads(a.threads)
    print(
        f"server_bench: {platform.node()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{a.threads} torch thread(s), device {a.device}, python {platform.python_version()}",
        flush=True,
    )
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        parts = {"1": bench_overhead, "2": bench_latency, "3": bench_snapshot}
        for key in a.parts.split(","):
            for line in parts[key](a, tmp):
                print(line, flush=True)
    print(f"total {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
