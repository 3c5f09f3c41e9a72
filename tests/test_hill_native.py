"""The HILL loss's C kernel: built at first use into a cache folder, rebuilt when that file is damaged, built by
two processes at once without a torn file, refused with the reason where no compiler works, and checked
against numpy on bad input. Its values and gradients are pinned with the other paths in test_hill_loss.py."""

import importlib
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from test_hill_loss import random_problem

from hill_app.losses import hill_native

H = importlib.import_module("hill_app.losses.hill_loss")

needs_compiler = pytest.mark.skipif(
    not hill_native.available()[0], reason=f"the HILL C kernel cannot be built here: {hill_native.available()[1]}"
)


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    """An empty cache folder and no library loaded; afterwards the process's default state again."""
    monkeypatch.setenv("HILL_NATIVE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("HILL_NATIVE", raising=False)
    hill_native.reset()
    yield tmp_path / "cache"
    hill_native.reset()


def built(cache):
    return sorted(p.name for p in cache.iterdir()) if cache.is_dir() else []


@needs_compiler
def test_the_first_use_builds_the_library_and_later_ones_load_it(fresh_cache):
    ok, where = hill_native.available()
    assert ok and where.startswith(str(fresh_cache))
    (lib,) = fresh_cache.iterdir()
    stamp = lib.stat().st_mtime_ns
    hill_native.reset()
    assert hill_native.available() == (True, where)
    assert lib.stat().st_mtime_ns == stamp  # loaded, not built again
    assert built(fresh_cache) == [lib.name]


@needs_compiler
def test_a_damaged_library_file_is_built_again(fresh_cache):
    """A file cut short (a full disk, a copied cache) fails to load and is built again. It is built in another
    process first: a library this process has mapped must never be written over."""
    env = {**os.environ, "HILL_NATIVE_CACHE": str(fresh_cache)}
    code = "from hill_app.losses import hill_native; print(hill_native.available()[0])"
    assert (
        subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True).stdout.strip() == "True"
    )
    (lib,) = fresh_cache.iterdir()
    lib.write_bytes(b"\x7fELF cut off half-way")
    ok, _ = hill_native.available()
    assert ok
    assert lib.read_bytes()[:4] == b"\x7fELF" and lib.stat().st_size > 1000
    feats, y, idx, (w, b), targets = random_problem(0)
    t = H.hill_terms((feats @ w.T + b).float(), y, idx, targets)
    assert torch.isfinite(t).all()


@needs_compiler
def test_two_processes_building_at_once_leave_one_whole_library(fresh_cache):
    code = "from hill_app.losses import hill_native; print(hill_native.available()[0])"
    env = {**os.environ, "HILL_NATIVE_CACHE": str(fresh_cache)}
    procs = [
        subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True) for _ in range(2)
    ]
    outs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert outs == ["True", "True"]
    names = built(fresh_cache)
    assert len(names) == 1 and names[0].startswith("hill_native-") and names[0].endswith(".so")  # no temp files


def test_without_a_compiler_the_numpy_kernel_is_used_and_the_reason_given(fresh_cache, monkeypatch):
    monkeypatch.setenv("CC", "no-such-compiler-here")
    ok, why = hill_native.available()
    assert not ok and "'no-such-compiler-here' is not on PATH" in why
    assert H.cpu_kernel() == "numpy"
    with pytest.raises(RuntimeError, match="no-such-compiler-here"):
        H.cpu_kernel("native")
    feats, y, idx, (w, b), targets = random_problem(1)
    t = H.hill_terms((feats @ w.T + b).float(), y, idx, targets)  # trains on, through numpy
    assert torch.isfinite(t).all()
    assert built(fresh_cache) == []


def test_a_compiler_that_fails_is_reported_with_its_exit_status(fresh_cache, monkeypatch, tmp_path):
    cc = tmp_path / "broken-cc"
    cc.write_text("#!/bin/sh\necho 'broken-cc: cannot compile today' >&2\nexit 3\n")
    cc.chmod(0o755)
    monkeypatch.setenv("CC", str(cc))
    ok, why = hill_native.available()
    assert not ok
    assert "exited with 3" in why and "cannot compile today" in why and str(fresh_cache) in why
    assert [n for n in built(fresh_cache) if n.startswith(".build-")] == []  # the temporary file is removed


def test_hill_native_0_switches_it_off(fresh_cache, monkeypatch):
    monkeypatch.setenv("HILL_NATIVE", "0")
    assert hill_native.available() == (False, "HILL_NATIVE=0 is set")
    assert H.cpu_kernel() == "numpy"


def test_an_unknown_kernel_name_is_refused():
    with pytest.raises(ValueError, match="'fortran'"):
        H.cpu_kernel("fortran")


@needs_compiler
@pytest.mark.parametrize(
    "field, value, message",
    [("y", 10, r"labels: expected values in \[0, 10\), got 0\.\.10"), ("idx", 400, r"sample indices.*\[0, 400\)")],
)
def test_a_label_or_sample_index_out_of_range_is_an_error_not_a_crash(monkeypatch, field, value, message):
    monkeypatch.setattr(H, "CPU_KERNEL", "native")
    feats, y, idx, (w, b), targets = random_problem(2)
    bad = {"y": y.clone(), "idx": idx.clone()}
    bad[field][5] = value
    with pytest.raises(hill_native.NativeError, match=message):
        H.hill_terms((feats @ w.T + b).float(), bad["y"], bad["idx"], targets)


@needs_compiler
def test_features_that_are_not_contiguous_give_the_same_terms(monkeypatch):
    monkeypatch.setattr(H, "CPU_KERNEL", "native")
    feats, y, idx, (w, b), targets = random_problem(3)
    z = (feats @ w.T + b).float()
    wide = torch.zeros(z.shape[0], 5)
    wide[:, 1:3] = z  # rows with a stride of 5
    strided = wide[:, 1:3]
    tz = z.t().contiguous().t()  # column-major
    assert not strided.is_contiguous() and not tz.is_contiguous()
    want = H.hill_terms(z, y, idx, targets)
    assert torch.equal(H.hill_terms(strided, y, idx, targets), want)
    assert torch.equal(H.hill_terms(tz, y, idx, targets), want)


def test_the_c_source_ships_with_the_package():
    """The library is built from the installed source, so a wheel must carry it (package-data)."""
    assert hill_native.SOURCE.is_file()
    from pathlib import Path

    toml = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert '"hill_app.losses" = ["hill_native.c"]' in textwrap.dedent(toml)


# ---------------------------------------------------------------- runs record the kernel they trained with

EDITS = [
    {"op": "strategy", "name": "compactness", "strength": 0.4},
    {"op": "move_points", "indices": [5, 9], "to": [0.2, -0.1]},
]


def _run(run_dir, kernel=None, events=None):
    from hill_app.engine.config import RunConfig
    from hill_app.engine.session import TrainingSession

    def handler(s, info):
        s.submit("set_latent_targets", {"edits": EDITS})
        s.submit("resume_training", {})

    cfg = RunConfig(epochs=4, pause_at=[2], seed=2, device="cpu")
    TrainingSession(cfg, run_dir, pause_handler=handler, cpu_kernel=kernel, events=events).run()


def _journal(run_dir):
    from hill_app.engine.journal import read_journal

    return list(read_journal(run_dir / "journal.jsonl"))


def _started(run_dir):
    return next(r for r in _journal(run_dir) if r["type"] == "run_started")


@needs_compiler
def test_a_run_replays_exactly_with_the_kernel_it_recorded(tmp_path):
    """The C kernel and numpy round differently, so the two kernels train apart in the last bits; a run made
    with numpy where the C kernel is available replays with numpy, and is identical."""
    from hill_app.engine.history import epoch_metrics
    from hill_app.engine.replay import replay_run

    _run(tmp_path / "numpy", "numpy")
    _run(tmp_path / "native")
    assert _started(tmp_path / "numpy")["hill_cpu_kernel"] == "numpy"
    assert _started(tmp_path / "native")["hill_cpu_kernel"] == "native"  # the default where it can be built
    assert epoch_metrics(_journal(tmp_path / "numpy")) != epoch_metrics(_journal(tmp_path / "native"))
    for name in ("numpy", "native"):
        _, diffs = replay_run(tmp_path / name, tmp_path / f"{name}-replay")
        assert diffs == [], name
        assert _started(tmp_path / f"{name}-replay")["hill_cpu_kernel"] == name


@needs_compiler
def test_a_resumed_run_keeps_its_kernel(tmp_path):
    from hill_app.engine.config import RunConfig
    from hill_app.engine.session import TrainingSession

    cfg = RunConfig(epochs=3, pause_at=[], seed=2, device="cpu")
    TrainingSession(cfg, tmp_path / "run", cpu_kernel="numpy").close()  # as if killed before its first epoch
    s = TrainingSession(cfg, tmp_path / "run", resume=True)
    try:
        assert s.hill_cpu_kernel == "numpy"
    finally:
        s.close()


@needs_compiler
def test_a_replay_where_the_recorded_kernel_is_missing_says_so_and_uses_numpy(tmp_path, fresh_cache, monkeypatch):
    from hill_app.engine.events import EventChannel
    from hill_app.engine.replay import replay_run

    _run(tmp_path / "run")  # the C kernel, built into the fresh cache
    monkeypatch.setenv("HILL_NATIVE", "0")
    hill_native.reset()
    events = EventChannel()
    logs = []
    events.subscribe(lambda ev: logs.append(ev.data) if ev.kind == "log" else None)
    replay_run(tmp_path / "run", tmp_path / "replay", events=events)
    assert _started(tmp_path / "replay")["hill_cpu_kernel"] == "numpy"
    (warning,) = [e for e in logs if "C kernel" in e.get("message", "")]
    assert warning["level"] == "warning" and "HILL_NATIVE=0 is set" in warning["message"]


@needs_compiler
def test_a_cache_folder_that_cannot_be_made_is_reported(monkeypatch, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("HILL_NATIVE_CACHE", str(blocker / "native"))
    hill_native.reset()
    try:
        ok, why = hill_native.available()
        assert not ok and why.startswith(f"building hill_native.c into {blocker / 'native'} failed: ")
        assert H.cpu_kernel() == "numpy"
    finally:
        hill_native.reset()


def test_a_run_without_the_c_kernel_says_so_and_records_numpy(tmp_path, fresh_cache, monkeypatch):
    from hill_app.engine.config import RunConfig
    from hill_app.engine.events import EventChannel
    from hill_app.engine.session import TrainingSession

    monkeypatch.setenv("HILL_NATIVE", "0")
    events = EventChannel()
    logs = []
    events.subscribe(lambda ev: logs.append(ev.data) if ev.kind == "log" else None)
    s = TrainingSession(RunConfig(epochs=2, pause_at=[], seed=0, device="cpu"), tmp_path / "run", events=events)
    s.close()
    assert _started(tmp_path / "run")["hill_cpu_kernel"] == "numpy"
    assert {"level": "info", "message": "HILL loss on the CPU in numpy: HILL_NATIVE=0 is set"} in logs
