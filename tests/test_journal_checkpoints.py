"""The journal, crash-safe writes, checkpoints (weights_only) and the on-disk checkpoint tree."""

import json
import os
import pickle
import re
import threading
import warnings

import pytest
import torch

from hill_app.engine import files
from hill_app.engine.branches import CheckpointTree, sanitize_branch
from hill_app.engine.checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from hill_app.engine.config import RunConfig
from hill_app.engine.journal import Journal, read_journal
from hill_app.engine.session import TrainingSession


def records(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return list(read_journal(path))


# ---------------------------------------------------------------- journal


def test_records_are_readable_before_close_and_seq_increases(tmp_path):
    p = tmp_path / "journal.jsonl"
    j = Journal(p)
    for i in range(3):
        rec = j.write("epoch", epoch=i + 1, loss=0.5 / (i + 1))
        assert rec["seq"] == i and rec["type"] == "epoch"
        got = records(p)  # another reader, while the writer still holds the file open
        assert [r["seq"] for r in got] == list(range(i + 1))
        assert got[-1]["epoch"] == i + 1 and got[-1]["loss"] == 0.5 / (i + 1)
    j.close()
    j.close()  # closing twice is harmless


def test_every_record_is_fsynced(tmp_path, monkeypatch):
    """Each record is flushed into the OS and then fsynced: when fsync runs, the file already holds the whole
    record (fsync before flush would sync the bytes of the previous record only)."""
    p = tmp_path / "j.jsonl"
    calls = []
    real = os.fsync

    def fsync(fd):
        on_disk = p.read_bytes()  # what the OS has for the file at the moment of the fsync
        calls.append(on_disk)
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    j = Journal(p)
    n0 = len(calls)
    for i in range(4):
        rec = j.write("x", i=i)
        assert len(calls) - n0 == i + 1, "one fsync per record"
        synced = calls[-1]
        assert synced.endswith(b"\n") and json.loads(synced.splitlines()[-1]) == rec, (
            f"record {i} was not in the file when it was fsynced: {synced[-80:]!r}"
        )
        assert synced.count(b"\n") == i + 1
    j.close()


def test_unsynced_records_reach_the_disk_with_the_next_synced_one_or_sync(tmp_path, monkeypatch):
    """A command's requested/pending records are written with sync=False: in the file at once (a kill keeps
    them), fsynced by the next synced record, by sync() (before a checkpoint counts them) or by close()."""
    p = tmp_path / "j.jsonl"
    synced: list[int] = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(p.read_bytes().count(b"\n")), real(fd))[1])
    j = Journal(p)
    j.write("a", sync=False)
    j.write("b", sync=False)
    assert synced == [] and p.read_bytes().count(b"\n") == 2  # flushed, not fsynced
    j.write("c")
    assert synced == [3]  # one fsync takes all three
    j.sync()
    assert synced == [3]  # nothing left to sync: no extra fsync
    j.write("d", sync=False)
    j.sync()
    assert synced == [3, 4]
    j.write("e", sync=False)
    j.close()
    assert synced == [3, 4, 5]


def test_a_checkpoint_syncs_the_journal_records_it_counts(tmp_path, monkeypatch):
    """A checkpoint records the journal's length; a power loss must not leave it counting records that were
    only in the OS, or the resume would refuse the folder as cut short."""
    s = TrainingSession(RunConfig(epochs=1, pause_at=[], seed=0, device="cpu"), tmp_path / "run")
    s.submit("set_alpha", {"alpha": 0.3})  # requested + pending: not synced yet
    jfd = s.journal._f.fileno()
    order: list[str] = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (order.append("journal" if fd == jfd else "other"), real(fd))[1])
    s.save_checkpoint(note="now")
    assert order[0] == "journal", order  # the journal is on the disk before the checkpoint file is
    s.close()


def test_seq_continues_after_reopening(tmp_path):
    p = tmp_path / "journal.jsonl"
    j = Journal(p)
    j.write("a")
    j.write("b")
    j.close()
    j = Journal(p)
    assert j.write("c")["seq"] == 2
    j.close()
    assert [(r["seq"], r["type"]) for r in records(p)] == [(0, "a"), (1, "b"), (2, "c")]


def test_torn_last_line_is_skipped_with_warning_and_next_write_starts_fresh(tmp_path):
    p = tmp_path / "journal.jsonl"
    j = Journal(p)
    j.write("epoch", epoch=1)
    j.write("epoch", epoch=2)
    j.close()
    full = json.dumps({"seq": 2, "type": "epoch", "epoch": 3, "metrics": list(range(20))})
    with open(p, "a", encoding="utf-8") as f:
        f.write(full[: len(full) // 2])  # killed mid-write
    with pytest.warns(UserWarning, match=r"line 3: torn record skipped"):
        got = list(read_journal(p))
    assert [r["epoch"] for r in got] == [1, 2]

    with pytest.warns(UserWarning, match="torn"):
        j = Journal(p)
    rec = j.write("epoch", epoch=3)
    j.close()
    assert rec["seq"] == 2
    with pytest.warns(UserWarning, match="line 3: torn"):
        got = list(read_journal(p))
    assert [r["epoch"] for r in got] == [1, 2, 3]
    lines = p.read_text().splitlines()
    assert len(lines) == 4 and json.loads(lines[3])["epoch"] == 3


def test_reader_skips_blank_lines_and_non_objects(tmp_path):
    p = tmp_path / "j.jsonl"
    p.write_text('{"seq": 0, "type": "a"}\n\n[1, 2]\n{"seq": 1, "type": "b"}\n')
    assert [r["type"] for r in records(p)] == ["a", "b"]


def test_concurrent_writers_give_whole_lines_and_unique_seq(tmp_path):
    p = tmp_path / "j.jsonl"
    j = Journal(p, fsync=False)

    def work(t):
        for i in range(50):
            j.write("command", thread=t, i=i, payload="x" * 200)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    j.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no torn line
        got = list(read_journal(p))
    assert sorted(r["seq"] for r in got) == list(range(200))
    assert [r["seq"] for r in got] == list(range(200))  # written in seq order


# ---------------------------------------------------------------- atomic writes


def test_atomic_write_leaves_no_temp_file(tmp_path):
    p = tmp_path / "summary.json"
    files.atomic_write_text(p, "one\n")
    files.atomic_write_text(p, "two\n")
    assert p.read_text() == "two\n"
    assert sorted(os.listdir(tmp_path)) == ["summary.json"]


def test_atomic_write_failure_keeps_the_old_file_and_leaves_no_temp_file(tmp_path, monkeypatch):
    p = tmp_path / "config.json"
    p.write_text("old\n")

    def boom(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        files.atomic_write_text(p, "new\n")
    monkeypatch.undo()
    assert p.read_text() == "old\n"
    assert sorted(os.listdir(tmp_path)) == ["config.json"]


# ---------------------------------------------------------------- checkpoints


def sample_state():
    g = torch.Generator().manual_seed(3)
    return {
        "format": "hill-app/1",
        "model": {"w": torch.randn(3, 4, generator=g), "b": torch.zeros(3)},
        "optimizer": {
            "state": {0: {"momentum_buffer": torch.ones(2)}},
            "param_groups": [{"lr": 0.05, "momentum": 0.9, "nesterov": True, "params": [0]}],
        },
        "projection": None,
        "layout_json": json.dumps({"centers": [[0, 1]]}),
        "alpha": 0.5,
        "epoch": 3,
        "rng_cpu": torch.get_rng_state(),
        "rng_gen": g.get_state(),
        "active": torch.ones(5, dtype=torch.bool),
        "frozen": ["head.weight"],
        "betas": (0.9, 0.999),
    }


def test_checkpoint_round_trip(tmp_path):
    st = sample_state()
    p = tmp_path / "ck" / "a.pt"
    save_checkpoint(p, st)
    assert sorted(os.listdir(p.parent)) == ["a.pt"]  # no temp left
    back = load_checkpoint(p)
    assert set(back) == set(st)
    torch.testing.assert_close(back["model"]["w"], st["model"]["w"], rtol=0, atol=0)
    assert back["optimizer"]["param_groups"][0]["nesterov"] is True
    torch.testing.assert_close(back["optimizer"]["state"][0]["momentum_buffer"], torch.ones(2))
    assert torch.equal(back["rng_cpu"], st["rng_cpu"]) and torch.equal(back["rng_gen"], st["rng_gen"])
    assert back["active"].dtype == torch.bool
    for k in ("format", "projection", "layout_json", "alpha", "epoch", "frozen", "betas"):
        assert back[k] == st[k]


def test_checkpoint_is_loaded_with_weights_only(tmp_path, monkeypatch):
    seen = {}
    real = torch.load

    def spy(*a, **kw):
        seen.update(kw)
        return real(*a, **kw)

    monkeypatch.setattr(torch, "load", spy)
    p = tmp_path / "a.pt"
    save_checkpoint(p, {"x": torch.ones(1)})
    load_checkpoint(p)
    assert seen.get("weights_only") is True


class Payload:
    """An arbitrary class: a weights_only load must refuse to build it."""

    def __reduce__(self):
        return (os.getcwd, ())


def test_pickled_arbitrary_object_is_refused_naming_the_file(tmp_path):
    p = tmp_path / "evil.pt"
    torch.save({"model": {}, "payload": Payload()}, p)
    with pytest.raises(CheckpointError) as ei:
        load_checkpoint(p)
    assert str(p) in str(ei.value)
    assert "cannot load" in str(ei.value) and "UnpicklingError" in str(ei.value)


def test_plain_pickle_of_a_class_instance_is_refused(tmp_path):
    p = tmp_path / "evil2.pt"
    with open(p, "wb") as f:
        pickle.dump({"obj": Payload()}, f, protocol=2)
    with pytest.raises(CheckpointError, match=re.escape(str(p))):
        load_checkpoint(p)


def test_missing_and_truncated_checkpoints_name_the_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found") as ei:
        load_checkpoint(tmp_path / "nope.pt")
    assert "nope.pt" in str(ei.value)
    p = tmp_path / "cut.pt"
    save_checkpoint(p, sample_state())
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=re.escape(str(p))):
        load_checkpoint(p)


# ---------------------------------------------------------------- the checkpoint tree


def test_tree_persists_across_instances(tmp_path):
    folder = tmp_path / "checkpoints"
    t = CheckpointTree(folder)
    assert t.latest() is None and t.branches() == []
    a = t.add({"w": torch.ones(2)}, branch="main", parent=None, step=10, epoch=1, metrics={"loss": 1.0}, note="x")
    b = t.add({"w": torch.full((2,), 2.0)}, branch="alt", parent=a["uuid"], step=20, epoch=2, metrics={})
    leftovers = [n for n in os.listdir(folder) if n.startswith(".")]
    assert leftovers == []

    t2 = CheckpointTree(folder)
    assert [n["uuid"] for n in t2.nodes] == [a["uuid"], b["uuid"]]
    assert t2.latest()["uuid"] == b["uuid"]
    assert t2.get(b["uuid"])["parent"] == a["uuid"]
    assert t2.get(a["uuid"])["metrics"] == {"loss": 1.0} and t2.get(a["uuid"])["note"] == "x"
    assert t2.branches() == ["main", "alt"]
    torch.testing.assert_close(t2.load(b["uuid"])["w"], torch.full((2,), 2.0))
    assert t2.unique_branch("main") == "main-2"
    with pytest.raises(CheckpointError, match="no checkpoint with uuid 'deadbeef'"):
        t2.get("deadbeef")


def test_unique_branch_counts_up(tmp_path):
    t = CheckpointTree(tmp_path)
    assert t.unique_branch("main") == "main"
    for name in ("main", "main-2", "main-3"):
        t.add({}, branch=name, parent=None, step=0, epoch=0, metrics={})
    assert t.unique_branch("main") == "main-4"
    assert t.unique_branch("main-2") == "main-2-2"
    assert t.unique_branch("../main") == "main-4"
    assert t.unique_branch("fresh") == "fresh"


def test_unreadable_index_names_the_file(tmp_path):
    (tmp_path / "tree.json").write_text('{"nodes": [')
    with pytest.raises(CheckpointError, match="tree.json"):
        CheckpointTree(tmp_path)


def test_tampered_index_cannot_load_outside_the_folder(tmp_path):
    folder = tmp_path / "checkpoints"
    t = CheckpointTree(folder)
    node = t.add({"w": torch.ones(1)}, branch="main", parent=None, step=0, epoch=0, metrics={})
    save_checkpoint(tmp_path / "outside.pt", {"w": torch.zeros(1)})
    idx = json.loads((folder / "tree.json").read_text())
    idx["nodes"][0]["file"] = "../outside.pt"
    (folder / "tree.json").write_text(json.dumps(idx))
    with pytest.raises(CheckpointError, match="outside"):
        CheckpointTree(folder).load(node["uuid"])


NASTY = [
    "../../etc/passwd",
    "",
    "...",
    ".",
    "..",
    "a/b",
    "x" * 500,
    "/abs/path",
    "..\\..\\win",
    "a\x00b",
    "spaces and tabs\t",
    "-leading-dash",
    ".hidden",
    "ünïcödé/../..",
    "CON",
    "a" * 63 + "/" + "b" * 10,
    "." * 64 + "x",
    "-" * 70,
]


@pytest.mark.parametrize("name", NASTY, ids=range(len(NASTY)))
def test_sanitize_branch_never_escapes(tmp_path, name):
    clean = sanitize_branch(name)
    assert clean and len(clean) <= 64
    assert re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", clean), clean
    assert clean not in (".", "..")
    assert os.sep not in clean and "/" not in clean and "\\" not in clean
    assert (tmp_path / clean).resolve().parent == tmp_path.resolve()
    assert sanitize_branch(clean) == clean  # idempotent
    t = CheckpointTree(tmp_path / "ck")
    ub = t.unique_branch(name)
    assert (tmp_path / ub).resolve().parent == tmp_path.resolve()


def test_sanitize_branch_examples():
    assert sanitize_branch("../../etc/passwd") == "etc-passwd"
    assert sanitize_branch("") == "branch"
    assert sanitize_branch("...") == "branch"
    assert sanitize_branch("a/b") == "a-b"
    assert sanitize_branch("main-from-e25") == "main-from-e25"
    assert sanitize_branch("x" * 500) == "x" * 64
