"""`hill-app compare PROTOCOL --strategies A,B,... --seeds 0-9 --out DIR`: scripted strategies against the
no-edit baseline, paired by seed, with controls, in parallel worker processes. Arms (``BASE[KEY=VALUE;...]``),
controls, outputs and how to read the interval: docs/measuring-edits.md.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime as _dt
import html
import io
import json
import math
import os
import re
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .stats import PairedInterval, bootstrap, fmt_interval, paired_t

EXIT_USAGE = 2
CONTROLS = ("null", "alpha0", "full", "early")
RUN_FIELDS = (
    "arm",
    "seed",
    "status",
    "test_accuracy",
    "val_accuracy",
    "baseline_test_accuracy",
    "gain",
    "edits_applied",
    "commits",
    "epochs",
    "wall_seconds",
    "device",
    "run_dir",
    "error",
)


class CompareError(ValueError):
    """An argument, arm or file is wrong; the message names it and what was expected."""


# ---------------------------------------------------------------- arms


@dataclass
class Arm:
    name: str  # unique label used in tables and folder names
    base: str  # "baseline", "null", a strategy spec or an edits file path
    kind: str  # "baseline" | "null" | "strategy" | "file"
    overrides: dict[str, Any] = field(default_factory=dict)  # RunConfig fields
    edit_at: list[int] | None = None  # pauses that get edits; None: all of the run's pauses
    spec: str | None = None  # canonical strategy spec (kind "strategy")

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def split_top(text: str) -> list[str]:
    """Split on commas outside brackets."""
    out, depth, cur = [], 0, []
    for ch in text:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise CompareError(f"--strategies: unbalanced ']' in {text!r}")
        if ch == "," and depth == 0:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if depth:
        raise CompareError(f"--strategies: unbalanced '[' in {text!r}")
    out.append("".join(cur))
    return [s.strip() for s in out if s.strip()]


def early_pauses(pause_at: list[int]) -> list[int]:
    """Every pause moved earlier by half the first pause's epoch (25,30,35,40 -> 13,18,23,28)."""
    if not pause_at:
        return []
    shift = pause_at[0] // 2
    return [p - shift for p in pause_at if p - shift >= 2]


def _epochs(text: str, where: str) -> list[int]:
    try:
        out = [int(t) for t in re.split(r"[,/ ]+", text.strip()) if t]
    except ValueError:
        raise CompareError(f"{where}: expected epochs such as 25,30, got {text!r}") from None
    if not out or sorted(set(out)) != out:
        raise CompareError(f"{where}: expected increasing epochs without repeats, got {text!r}")
    return out


def parse_arm(text: str, pause_at: list[int]) -> Arm:
    """One ``BASE[KEY=VALUE;...]`` (see the module docstring); ``pause_at`` is the protocol's."""
    from .suggest import SuggestError, canonical, parse_spec

    m = re.fullmatch(r"\s*([^\[\]]+?)\s*(?:\[(.*)\])?\s*", text)
    if not m:
        raise CompareError(f"--strategies: cannot read the arm {text!r}; expected BASE or BASE[KEY=VALUE;...]")
    base, opts_text = m.group(1), m.group(2)
    overrides: dict[str, Any] = {}
    edit_at_text: str | None = None
    label = None
    for item in [s for s in re.split(r";", opts_text or "") if s.strip()]:
        if "=" not in item:
            raise CompareError(f"--strategies: {text!r}: option {item!r} is not KEY=VALUE")
        k, v = (s.strip() for s in item.split("=", 1))
        where = f"--strategies: {text!r}: {k}"
        if k in ("alpha", "lam"):
            try:
                overrides[k] = float(v)
            except ValueError:
                raise CompareError(f"{where}: expected a number, got {v!r}") from None
        elif k == "ce_weight":
            if v not in ("blend", "full"):
                raise CompareError(f"{where}: expected blend or full, got {v!r}")
            overrides[k] = v
        elif k == "pause_at":
            overrides[k] = early_pauses(pause_at) if v == "early" else _epochs(v, where)
        elif k == "edit_at":
            edit_at_text = v
        elif k == "label":
            label = v
        else:
            raise CompareError(f"{where}: unknown option; expected alpha, lam, ce_weight, pause_at, edit_at or label")
    if base == "null":
        kind, spec = "null", None
    elif base.endswith(".json"):
        if not Path(base).expanduser().is_file():
            raise CompareError(f"--strategies: {base}: no such edits file")
        kind, spec = "file", None
    else:
        try:
            spec = canonical(parse_spec(base))
        except SuggestError as e:
            raise CompareError(f"--strategies: {e}") from None
        kind = "strategy"
    run_pauses = overrides.get("pause_at", pause_at)
    edit_at = None
    if edit_at_text is not None:
        mm = re.fullmatch(r"last(\d*)", edit_at_text)
        if mm:
            n = int(mm.group(1) or 1)
            edit_at = run_pauses[-n:] if n > 0 else []
        else:
            edit_at = _epochs(edit_at_text, f"--strategies: {text!r}: edit_at")
            bad = [e for e in edit_at if e not in run_pauses]
            if bad:
                raise CompareError(
                    f"--strategies: {text!r}: edit_at {bad} are not pauses of this arm "
                    f"({', '.join(map(str, run_pauses))})"
                )
    name = label or (spec or base) + (f"[{opts_text.strip()}]" if opts_text and opts_text.strip() else "")
    return Arm(name=name, base=base, kind=kind, overrides=overrides, edit_at=edit_at, spec=spec)


def build_arms(strategies: str, controls: str, pause_at: list[int]) -> list[Arm]:
    """The baseline, the listed arms and the controls asked for, with unique names."""
    arms = [parse_arm(t, pause_at) for t in split_top(strategies or "")]
    ctl = [c.strip() for c in (controls or "").split(",") if c.strip() and c.strip() != "none"]
    bad = [c for c in ctl if c not in CONTROLS]
    if bad:
        raise CompareError(f"--controls: unknown {', '.join(bad)}; expected some of {', '.join(CONTROLS)} or none")
    edited = [a for a in arms if a.kind in ("strategy", "file")]
    extra: list[Arm] = []
    if "null" in ctl and not any(a.kind == "null" and not a.overrides for a in arms):
        extra.append(parse_arm("null", pause_at))
    for c, opt in (("alpha0", "alpha=0"), ("full", "ce_weight=full"), ("early", "pause_at=early")):
        if c not in ctl:
            continue
        for a in edited + ([x for x in arms + extra if x.kind == "null"] if c == "full" else []):
            if a.overrides or a.edit_at is not None:
                continue  # controls are taken of the plain arms only
            extra.append(parse_arm(f"{a.base}[{opt}]", pause_at))
    out = [Arm("baseline", "baseline", "baseline")]
    seen = {"baseline"}
    for a in arms + extra:
        if a.name in seen:
            continue
        seen.add(a.name)
        out.append(a)
    if len(out) == 1:
        raise CompareError("--strategies: name at least one arm (a strategy, an edits file or null)")
    return out


def describe(arm: Arm, proto_pause_at: list[int], cfg: dict[str, Any]) -> str:
    """What the arm does, in words, for the page."""
    pauses = arm.overrides.get("pause_at", proto_pause_at)
    at = arm.edit_at if arm.edit_at is not None else pauses
    if arm.kind == "baseline":
        return f"no edits (resumes at once at pauses {_join(pauses)})"
    if arm.kind == "null":
        what = "commits the layout exactly as it stands (no change: only the loss changes)"
    elif arm.kind == "file":
        what = f"the edits file {arm.base}"
    else:
        what = f"suggest.py '{arm.spec}' computed from the view and the validation confusion"
    loss = []
    for k in ("alpha", "lam", "ce_weight"):
        if k in arm.overrides:
            loss.append(f"{k} {arm.overrides[k]}")
    tail = f"; {', '.join(loss)}" if loss else ""
    sched = f" (pauses {_join(pauses)})" if "pause_at" in arm.overrides else ""
    return f"{what}, at pauses {_join(at)}{sched}{tail}"


def _join(v: list[int]) -> str:
    return ",".join(map(str, v)) if v else "none"


# ---------------------------------------------------------------- seeds and settings


def parse_seeds(text: str) -> list[int]:
    """'0-9', '0,3,5', '0-4,10'."""
    out: list[int] = []
    for part in [p.strip() for p in str(text).split(",") if p.strip()]:
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise CompareError(f"--seeds: {part!r} is not N or N-M (e.g. 0-9)")
        a, b = int(m.group(1)), int(m.group(2) or m.group(1))
        if b < a:
            raise CompareError(f"--seeds: {part!r} runs backwards")
        out += [s for s in range(a, b + 1) if s not in out]
    if not out:
        raise CompareError("--seeds: no seeds given")
    return out


def _value(text: str) -> Any:
    t = text.strip()
    if t.lower() in ("true", "false"):
        return t.lower() == "true"
    if t.lower() in ("none", "null"):
        return None
    if re.fullmatch(r"-?\d+", t):
        return int(t)
    try:
        return float(t)
    except ValueError:
        pass
    if "," in t:
        return [_value(x) for x in t.split(",") if x.strip()]
    return t


def parse_sets(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for it in items or []:
        if "=" not in it:
            raise CompareError(f"--set: {it!r} is not KEY=VALUE (e.g. epochs=12, train_size=300, val_size=0.1)")
        k, v = it.split("=", 1)
        out[k.strip()] = _value(v)
    if isinstance(out.get("pause_at"), int):
        out["pause_at"] = [out["pause_at"]]
    return out


def run_configs(
    protocol: Any, arms: list[Arm], seeds: list[int], sets: dict[str, Any], device: str | None
) -> dict[tuple[str, int], dict[str, Any]]:
    """The resolved RunConfig (as JSON) of every (arm, seed): protocol, then --set, then the arm, then the seed."""
    from hill_app.engine.config import ConfigError, RunConfig

    base = protocol.run_config(device)
    names = {f.name for f in dataclasses.fields(RunConfig)}
    out = {}
    for a in arms:
        over = {**sets, **a.overrides}
        unknown = sorted(set(over) - names)
        if unknown:
            raise CompareError(
                f"{unknown[0]}: not a RunConfig field of this hill-app (fields: {', '.join(sorted(names))})"
            )
        for s in seeds:
            try:
                cfg = dataclasses.replace(base, **over, seed=s)
                if "pause_at" not in a.overrides and "epochs" in sets and "pause_at" not in sets:
                    cfg = dataclasses.replace(cfg, pause_at=[e for e in cfg.pause_at if e <= cfg.epochs])
                cfg = cfg.resolved()
            except ConfigError as e:
                raise CompareError(f"arm {a.name}: {e}") from None
            out[(a.name, s)] = cfg.to_json()
    return out


# ---------------------------------------------------------------- one run (in a worker)

_WORKER: dict[str, Any] = {"device": None, "bundles": {}}


def _init_worker(devices: list[str], counter: Any, threads: int) -> None:
    import torch

    torch.set_num_threads(max(1, threads))
    with counter.get_lock():
        i = counter.value
        counter.value += 1
    _WORKER["device"] = devices[i % len(devices)] if devices else None


def _bundle(cfg: Any) -> Any:
    """The data set of a config, loaded once per worker (the seed matters for synthetic data and subsets)."""
    from .runner import load_for_config

    sizes = tuple((k, getattr(cfg, k)) for k in ("val_size", "train_size") if hasattr(cfg, k))
    key = (cfg.dataset, cfg.data_root, cfg.synthetic_size, cfg.seed, sizes)
    cache = _WORKER["bundles"]
    if key not in cache:
        if len(cache) > 4:
            cache.clear()
        cache[key] = load_for_config(cfg)
    return cache[key]


def _resume(session: Any) -> None:
    session.submit("resume_training", {}, source="script:compare")


def make_pause_handler(
    arm: Arm,
    pause_at: list[int],
    proto_pause_at: list[int],
    num_classes: int | None = None,
    view_size: int | None = None,
) -> Callable[[Any, Any], None]:
    """The scripted participant of an arm: at each pause it commits its edits (if any), then resumes."""
    from .suggest import suggest_edits

    at = set(arm.edit_at if arm.edit_at is not None else pause_at)
    source = f"script:compare:{arm.name}"[:120]
    file_edits: dict[int, list[dict]] = {}
    if arm.kind == "file":
        from hill_app.engine.edits_file import load_edits_file

        ivs = load_edits_file(
            Path(arm.base).expanduser(),
            pause_at=proto_pause_at,
            num_classes=num_classes or 10**6,
            view_size=view_size or 2**62,
        )
        index = {e: i for i, e in enumerate(proto_pause_at)}
        for iv in ivs:  # the i-th pause of the protocol's schedule -> the i-th pause of this arm's
            i = index[iv.epoch]
            if i < len(pause_at) and iv.edits:
                file_edits[pause_at[i]] = iv.edits

    def handler(session: Any, info: Any) -> None:
        reason = str(getattr(info, "reason", "scheduled pause"))
        if not reason.startswith("scheduled pause"):  # a non-finite loss: no participant to decide, stop
            session.submit("stop_training", {"reason": f"stopped by compare: {reason}"[:500]}, source=source)
            return
        if info.epoch in at:
            edits: list[dict] | None = None
            if arm.kind == "null":
                edits = []
            elif arm.kind == "file":
                edits = file_edits.get(info.epoch)
            elif arm.kind == "strategy":
                _, preds, z = session.view_points()
                snap = {"z": z, "labels": session.view_labels, "preds": preds}
                conf = session.last_metrics.get("val_confusion")
                # each edit keeps its "origin": "suggested:NAME", journaled with it
                edits = [it["edit"] for it in suggest_edits(snap, conf, strategies=arm.spec)] or None
            if edits is not None:
                session.submit("set_latent_targets", {"edits": edits}, source=source)
        _resume(session)

    return handler


def run_one(job: dict[str, Any]) -> dict[str, Any]:
    """Train one (arm, seed); returns its row. Runs in a worker process (or in-process with --workers 0)."""
    from hill_app.engine.config import RunConfig
    from hill_app.engine.events import EventChannel
    from hill_app.engine.session import TrainingSession

    t0 = time.perf_counter()
    arm = Arm(**job["arm"])
    row: dict[str, Any] = {"arm": arm.name, "seed": job["seed"], "run_dir": job["run_dir"]}
    try:
        cfg = RunConfig.from_json(job["config"])
        if _WORKER["device"] is not None:
            cfg = dataclasses.replace(cfg, device=_WORKER["device"])
        run_dir = Path(job["run_dir"])
        if run_dir.exists():
            shutil.rmtree(run_dir)  # a run that did not finish before (--resume): start it again
        bundle = _bundle(cfg)
        from hill_app.engine.session import view_set_indices

        handler = make_pause_handler(
            arm,
            cfg.pause_at,
            job["proto_pause_at"],
            bundle.num_classes,
            view_size=len(view_set_indices(cfg, bundle.train_y)),
        )
        session = TrainingSession(cfg, run_dir, bundle=bundle, events=EventChannel(), pause_handler=handler)
        session.journal.write("compare_arm", arm=arm.to_json(), seed=job["seed"], description=job["description"])
        summary = session.run()
        from hill_app.engine.journal import read_journal

        recs = list(read_journal(run_dir / "journal.jsonl"))
        commits = sum(1 for r in recs if r.get("type") == "targets")
        # a commit the engine refused would leave the arm looking like the baseline: that run does not count
        refused = [
            r
            for r in recs
            if r.get("type") == "command" and r.get("command") == "set_latent_targets" and r.get("status") == "failed"
        ]
        if refused:
            raise CompareError(
                f"epoch {refused[0].get('epoch')}: the engine refused the arm's edits: {refused[0].get('reason')}"
            )
        if not job.get("keep_checkpoints"):
            shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
        row.update(
            status="ok",
            test_accuracy=summary["test_accuracy"],
            val_accuracy=summary["val_accuracy"],
            edits_applied=summary["edits_applied"],
            commits=commits,
            epochs=summary["epochs"],
            device=summary["device"],
        )
        if summary.get("stopped_early"):  # it counts (what the arm did to training), and the page says so
            why = next(
                (
                    r.get("reason")
                    for r in recs
                    if r.get("type") == "command"
                    and r.get("command") == "stop_training"
                    and r.get("status") == "success"
                ),
                None,
            )
            row["error"] = f"stopped early after epoch {summary['epochs']}: {why or 'stop requested'}"[:500]
    except Exception as e:  # noqa: BLE001 - one failed run is reported in its row; the others go on
        row.update(status="failed", error=f"{type(e).__name__}: {e}"[:500])
    row["wall_seconds"] = time.perf_counter() - t0
    return row


# ---------------------------------------------------------------- results


def _read_rows(path: Path) -> list[dict[str, Any]]:
    rows = []
    with open(path, newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            r["seed"] = int(r["seed"])
            for k in ("test_accuracy", "val_accuracy", "wall_seconds"):
                r[k] = float(r[k]) if r.get(k) not in (None, "") else None
            rows.append(r)
    return rows


def _csv(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v)
    return str(v)


def analyse(
    arms: list[Arm], seeds: list[int], rows: list[dict[str, Any]], method: str, level: float = 0.95
) -> tuple[dict[str, dict[int, float]], list[dict[str, Any]]]:
    """Per-arm {seed: test accuracy} and per-arm paired statistics against the baseline."""
    acc: dict[str, dict[int, float]] = {a.name: {} for a in arms}
    for r in rows:
        if r.get("status") == "ok" and r["arm"] in acc and r.get("test_accuracy") is not None:
            acc[r["arm"]][int(r["seed"])] = float(r["test_accuracy"])
    base = acc["baseline"]
    out = []
    for a in arms[1:]:
        paired = [s for s in seeds if s in base and s in acc[a.name]]
        diffs = [acc[a.name][s] - base[s] for s in paired]
        ivs: dict[str, PairedInterval] = {}
        if method in ("t", "both"):
            ivs["t"] = paired_t(diffs, level)
        if method in ("bootstrap", "both"):
            ivs["bootstrap"] = bootstrap(diffs, level)
        out.append(
            {
                "arm": a.name,
                "n": len(paired),
                "seeds": paired,
                "baseline_mean": _mean([base[s] for s in paired]),
                "arm_mean": _mean([acc[a.name][s] for s in paired]),
                "intervals": ivs,
            }
        )
    return acc, out


def _mean(v: list[float]) -> float | None:
    return sum(v) / len(v) if v else None


def write_outputs(
    out: Path, arms: list[Arm], seeds: list[int], rows: list[dict[str, Any]], method: str, meta: dict[str, Any]
) -> None:
    acc, stats = analyse(arms, seeds, rows, method)
    base = acc["baseline"]
    order = {a.name: i for i, a in enumerate(arms)}
    rows = sorted(rows, key=lambda r: (order.get(r["arm"], 10**6), int(r["seed"])))
    for r in rows:
        b = base.get(int(r["seed"]))
        r["baseline_test_accuracy"] = b
        ok = r.get("status") == "ok" and r.get("test_accuracy") is not None and b is not None
        r["gain"] = (float(r["test_accuracy"]) - b) if ok else None
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(RUN_FIELDS)
    for r in rows:
        w.writerow([_csv(r.get(k)) for k in RUN_FIELDS])
    (out / "runs.csv").write_text(buf.getvalue(), encoding="utf-8")

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(
        [
            "arm",
            "description",
            "n_pairs",
            "baseline_mean",
            "arm_mean",
            "method",
            "level",
            "gain_mean",
            "gain_sd",
            "ci_low",
            "ci_high",
            "verdict",
            "wins",
            "losses",
        ]
    )
    desc = meta["descriptions"]
    for s in stats:
        for iv in s["intervals"].values():
            w.writerow(
                [
                    s["arm"],
                    desc[s["arm"]],
                    s["n"],
                    _csv(s["baseline_mean"]),
                    _csv(s["arm_mean"]),
                    iv.method,
                    iv.level,
                    _csv(iv.mean),
                    _csv(iv.sd),
                    _csv(iv.lo),
                    _csv(iv.hi),
                    iv.verdict,
                    iv.wins,
                    iv.losses,
                ]
            )
    (out / "summary.csv").write_text(buf.getvalue(), encoding="utf-8")
    doc = {
        **meta,
        "arms": [a.to_json() for a in arms],
        "seeds": seeds,
        "summary": [
            {
                **{k: v for k, v in s.items() if k != "intervals"},
                "intervals": {m: iv.to_json() for m, iv in s["intervals"].items()},
            }
            for s in stats
        ],
        "accuracy": {a: {str(k): v for k, v in d.items()} for a, d in acc.items()},
    }
    (out / "compare.json").write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    (out / "index.html").write_text(render_html(arms, seeds, acc, stats, rows, meta), encoding="utf-8")


# ---------------------------------------------------------------- the page

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1200px;color:#222;
line-height:1.4;padding:0 1em}h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.8em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.6em 0;font-size:.88em}th,td{border:1px solid #ccc;padding:.2em .5em;
text-align:right}th{background:#f3f3f3}td.l,th.l{text-align:left}.pos{color:#070}.neg{color:#b00}.zero{color:#666}
code{background:#f5f5f5;padding:0 .2em}.small{font-size:.85em;color:#555}.fail{color:#b00}
"""


def _e(v: Any) -> str:
    return html.escape(str(v))


def _pp(v: float | None) -> str:
    return "&ndash;" if v is None else f"{v * 100:+.2f}"


def _pc(v: float | None) -> str:
    return "&ndash;" if v is None else f"{v * 100:.2f}"


def interval_svg(stats: list[dict[str, Any]], key: str) -> str:
    """A forest plot of the paired gains (pp) with their intervals; zero marked."""
    items = [(s["arm"], s["intervals"].get(key)) for s in stats]
    items = [(a, iv) for a, iv in items if iv is not None and iv.mean is not None]
    if not items:
        return ""
    vals = [v for _, iv in items for v in (iv.lo, iv.hi, iv.mean) if v is not None] + [0.0]
    lo, hi = min(vals) * 100, max(vals) * 100
    pad = max((hi - lo) * 0.08, 0.05)
    lo, hi = lo - pad, hi + pad
    label_w, plot_w, row_h = 330, 520, 22
    h = row_h * len(items) + 40
    x = lambda v: label_w + (v * 100 - lo) / (hi - lo) * plot_w  # noqa: E731
    out = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{label_w + plot_w + 20}' height='{h}' "
        "font-family='sans-serif' font-size='12'>"
    ]
    x0 = x(0.0)
    out.append(f"<line x1='{x0:.1f}' y1='4' x2='{x0:.1f}' y2='{h - 26}' stroke='#888' stroke-dasharray='4,3'/>")
    step = _tick_step(hi - lo)
    t = math.ceil(lo / step) * step
    while t <= hi + 1e-9:
        xt = label_w + (t - lo) / (hi - lo) * plot_w
        out.append(
            f"<line x1='{xt:.1f}' y1='{h - 26}' x2='{xt:.1f}' y2='{h - 22}' stroke='#333'/>"
            f"<text x='{xt:.1f}' y='{h - 10}' text-anchor='middle'>{t:+.2f}</text>"
        )
        t += step
    out.append(
        f"<text x='{label_w + plot_w / 2:.0f}' y='{h}' text-anchor='middle' fill='#555'>"
        "gain over the baseline (percentage points)</text>"
    )
    for i, (arm, iv) in enumerate(items):
        y = 14 + i * row_h
        color = {"above zero": "#070", "below zero": "#b00"}.get(iv.verdict, "#555")
        out.append(f"<text x='{label_w - 8}' y='{y + 4}' text-anchor='end'>{_e(arm[:48])}</text>")
        if iv.lo is not None and iv.hi is not None:
            out.append(
                f"<line x1='{x(iv.lo):.1f}' y1='{y}' x2='{x(iv.hi):.1f}' y2='{y}' stroke='{color}' stroke-width='2'/>"
            )
        out.append(f"<circle cx='{x(iv.mean):.1f}' cy='{y}' r='4' fill='{color}'/>")
    out.append("</svg>")
    return "".join(out)


def _tick_step(span: float) -> float:
    raw = span / 6
    mag = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1
    return next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)


def render_html(
    arms: list[Arm],
    seeds: list[int],
    acc: dict[str, dict[int, float]],
    stats: list[dict[str, Any]],
    rows: list[dict[str, Any]],
    meta: dict[str, Any],
) -> str:
    method = meta["method"]
    keys = ["t", "bootstrap"] if method == "both" else [method]
    names = {"t": "paired t", "bootstrap": "percentile bootstrap (10,000 resamples, seed 0)"}
    o = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>hill-app compare: {_e(meta['protocol_name'])}"
        f"</title><style>{CSS}</style></head><body>"
    ]
    o.append(f"<h1>Edit strategies against the no-edit baseline: {_e(meta['protocol_name'])}</h1>")
    done = sum(1 for r in rows if r.get("status") == "ok")
    o.append(
        f"<p class='small'>{done} of {meta['planned_runs']} runs finished"
        + (f" ({meta['stopped']})" if meta.get("stopped") else "")
        + f"; generated {_e(meta['generated'])} by <code>{_e(meta['command'])}</code> on {_e(meta['device'])}."
        " Every number below is read from the runs' summary.json files.</p>"
    )
    cfg = meta["config"]
    o.append("<h2>Set-up</h2><table>")
    for k in (
        "dataset",
        "model",
        "epochs",
        "pause_at",
        "alpha",
        "lam",
        "ce_weight",
        "batch_size",
        "lr",
        "optimizer",
        "view_size",
        "val_size",
        "train_size",
        "compile",
        "amp",
    ):
        if k in cfg:
            v = cfg[k]
            shown = ", ".join(map(str, v)) if isinstance(v, list) else v
            o.append(f"<tr><th class='l'>{k}</th><td class='l'>{_e(shown)}</td></tr>")
    o.append(f"<tr><th class='l'>seeds</th><td class='l'>{_e(_join(seeds))}</td></tr>")
    o.append(
        f"<tr><th class='l'>interval</th><td class='l'>{' and '.join(names[k] for k in keys)}, "
        f"95%, of the mean paired gain (arm &minus; baseline of the same seed)</td></tr></table>"
    )

    for key in keys:
        o.append(f"<h2>Paired gain per arm ({names[key]})</h2>")
        o.append(
            "<table><tr><th class='l'>arm</th><th>pairs</th><th>baseline (%)</th><th>arm (%)</th>"
            "<th>gain (pp)</th><th>95% interval (pp)</th><th>seeds better / worse</th>"
            "<th class='l'>note</th></tr>"
        )
        for s in stats:
            iv = s["intervals"][key]
            cls = {"above zero": "pos", "below zero": "neg"}.get(iv.verdict, "zero")
            ci = "&ndash;" if iv.lo is None else f"[{iv.lo * 100:+.2f}, {iv.hi * 100:+.2f}]"
            o.append(
                f"<tr><td class='l'>{_e(s['arm'])}</td><td>{s['n']}</td><td>{_pc(s['baseline_mean'])}</td>"
                f"<td>{_pc(s['arm_mean'])}</td><td class='{cls}'>{_pp(iv.mean)}</td><td class='{cls}'>{ci}</td>"
                f"<td>{iv.wins} / {iv.losses}</td><td class='l {cls}'>{_e(iv.note())}</td></tr>"
            )
        o.append("</table>")
        o.append(interval_svg(stats, key))

    o.append(
        "<h2>Test accuracy per seed (%)</h2><table><tr><th class='l'>arm</th>"
        + "".join(f"<th>seed {s}</th>" for s in seeds)
        + "<th>mean</th></tr>"
    )
    for a in arms:
        vals = [acc[a.name].get(s) for s in seeds]
        have = [v for v in vals if v is not None]
        o.append(
            f"<tr><td class='l'>{_e(a.name)}</td>"
            + "".join(f"<td>{_pc(v)}</td>" for v in vals)
            + f"<td>{_pc(_mean(have))}</td></tr>"
        )
    o.append(
        "</table><h2>Gain per seed (pp)</h2><table><tr><th class='l'>arm</th>"
        + "".join(f"<th>seed {s}</th>" for s in seeds)
        + "</tr>"
    )
    base = acc["baseline"]
    for a in arms[1:]:
        cells = []
        for s in seeds:
            v = acc[a.name].get(s)
            g = None if v is None or s not in base else v - base[s]
            cells.append(f"<td class='{'pos' if g and g > 0 else 'neg' if g and g < 0 else 'zero'}'>{_pp(g)}</td>")
        o.append(f"<tr><td class='l'>{_e(a.name)}</td>{''.join(cells)}</tr>")
    o.append("</table>")
    early = [r for r in rows if r.get("status") == "ok" and r.get("error")]
    if early:
        o.append(
            "<h2>Runs stopped early</h2><p class='small'>They count in the tables above with the accuracy "
            "they stopped at: stopping is what the arm did to training.</p><ul>"
            + "".join(f"<li class='fail'>{_e(r['arm'])} seed {r['seed']}: {_e(r.get('error'))}</li>" for r in early)
            + "</ul>"
        )
    failed = [r for r in rows if r.get("status") != "ok"]
    if failed:
        o.append(
            "<h2>Failed runs</h2><ul>"
            + "".join(f"<li class='fail'>{_e(r['arm'])} seed {r['seed']}: {_e(r.get('error'))}</li>" for r in failed)
            + "</ul>"
        )
    o.append("<h2>Arms</h2><table><tr><th class='l'>arm</th><th class='l'>what it does</th></tr>")
    for a in arms:
        o.append(f"<tr><td class='l'>{_e(a.name)}</td><td class='l'>{_e(meta['descriptions'][a.name])}</td></tr>")
    o.append(
        "</table><p class='small'>Pairs: an arm and the baseline with the same seed share initial weights, "
        "data order and augmentation; up to the first edit they are the same run. The baseline pauses at the "
        "protocol's epochs and resumes at once (a pause without edits changes nothing). Gain = arm test "
        "accuracy &minus; baseline test accuracy of the same seed. Files: <a href='runs.csv'>runs.csv</a>, "
        "<a href='summary.csv'>summary.csv</a>, <a href='compare.json'>compare.json</a>.</p>"
    )
    o.append("</body></html>")
    return "\n".join(o)


# ---------------------------------------------------------------- the command


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("protocol", help="a protocol TOML file or a shipped protocol's name (as for hill-app study)")
    p.add_argument(
        "--strategies",
        required=True,
        metavar="ARMS",
        help="comma-separated arms: a suggest.py strategy (compactness, selective_compactness:0.5, "
        "a+b mixtures), an edits FILE.json or null; options in brackets, e.g. "
        "'confused_pairs[ce_weight=full]', 'compactness[edit_at=last]', 'null[pause_at=early]'",
    )
    p.add_argument(
        "--controls",
        default="null",
        help="controls added for every plain arm: null (commit the layout as it stands), alpha0 (same "
        "edits, alpha 0), full (ce_weight full), early (pauses moved earlier); or none "
        "(default: null)",
    )
    p.add_argument("--seeds", default="0-4", help="seeds, e.g. 0-9 or 0,2,5 (default 0-4)")
    p.add_argument("--out", required=True, help="output folder (runs, CSV, HTML)")
    p.add_argument("--device", default=None, help="override the protocol's device (auto, cpu, cuda, cuda:N)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a training setting for every run, e.g. epochs=12, train_size=300, val_size=0.1, "
        "compile=true (repeatable)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="parallel worker processes (default: CPU cores / threads on CPU, 6 per GPU on CUDA; "
        "0 runs in this process)",
    )
    p.add_argument("--threads", type=int, default=None, help="torch threads per worker (default 1)")
    p.add_argument(
        "--method",
        choices=["t", "bootstrap", "both"],
        default="t",
        help="interval of the mean paired gain: paired t (default), percentile bootstrap, or both",
    )
    p.add_argument(
        "--time-budget",
        type=float,
        default=None,
        metavar="SECONDS",
        help="start no run after this many seconds; the page then reports the seeds that finished",
    )
    p.add_argument("--resume", action="store_true", help="continue a comparison in --out, skipping finished runs")
    p.add_argument("--keep-checkpoints", action="store_true", help="keep each run's checkpoints (large)")


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _devices(cfg_device: str) -> tuple[list[str], str]:
    """The devices workers use and a description for the page."""
    import torch

    if cfg_device in ("auto", "cuda") and torch.cuda.is_available():
        n = torch.cuda.device_count()
        names = sorted({torch.cuda.get_device_name(i) for i in range(n)})
        return [f"cuda:{i}" for i in range(n)], f"{n} x {', '.join(names)} (torch {torch.__version__})"
    if cfg_device.startswith("cuda") and cfg_device != "cuda":
        if not torch.cuda.is_available():
            raise CompareError(f"--device {cfg_device}: this machine has no CUDA device")
        return [cfg_device], f"{torch.cuda.get_device_name(cfg_device)} (torch {torch.__version__})"
    if cfg_device not in ("auto", "cpu"):
        raise CompareError(f"--device {cfg_device}: this machine has no CUDA device (use cpu or auto)")
    return ["cpu"], f"CPU {_cpu_name()}, {_cores()} core(s) (torch {torch.__version__})"


def _cpu_name() -> str:
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", name)[:80]


def _fmt_s(s: float) -> str:
    return f"{int(s // 60)}m{int(s % 60):02d}s" if s >= 60 else f"{s:.0f}s"


def run(args: argparse.Namespace) -> int:
    """Entry of `hill-app compare`; returns the exit status (0: all runs finished, 1: some failed, 2: usage)."""
    try:
        return _run(args)
    except CompareError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE


def _run(args: argparse.Namespace) -> int:
    from hill_app.datasets import DataError
    from hill_app.engine.edits_file import EditsFileError

    from .protocol import ProtocolError, load_protocol, resolve_protocol_path

    try:
        protocol = load_protocol(resolve_protocol_path(args.protocol))
    except ProtocolError as e:
        raise CompareError(str(e)) from None
    seeds = parse_seeds(args.seeds)
    sets = parse_sets(args.set)
    if "seed" in sets:
        raise CompareError("--set seed=...: use --seeds")
    pause_at = list(sets.get("pause_at", protocol.pause_at))
    if "epochs" in sets and "pause_at" not in sets:
        pause_at = [e for e in pause_at if e <= sets["epochs"]]
    arms = build_arms(args.strategies, args.controls, pause_at)
    configs = run_configs(protocol, arms, seeds, sets, args.device)
    first = next(iter(configs.values()))
    devices, device_text = _devices(first["device"])
    out = Path(args.out)
    runs_csv = out / "runs.csv"
    if runs_csv.exists() and not args.resume:
        raise CompareError(
            f"{out} already holds a comparison (runs.csv); use --resume to continue it or choose another --out"
        )
    # everything that can be checked is checked before the first run: the data and the edits files
    from hill_app.engine.config import RunConfig

    try:
        from hill_app.engine.session import view_set_indices

        cfg0 = RunConfig.from_json(first)
        bundle = _bundle(cfg0)
        n_view = len(view_set_indices(cfg0, bundle.train_y))
        for a in arms:
            if a.kind == "file":
                make_pause_handler(
                    a, configs[(a.name, seeds[0])]["pause_at"], pause_at, bundle.num_classes, view_size=n_view
                )
    except (DataError, EditsFileError, ValueError) as e:
        raise CompareError(str(e)) from None
    _WORKER["bundles"].clear()

    descriptions = {a.name: describe(a, pause_at, first) for a in arms}
    done: dict[tuple[str, int], dict[str, Any]] = {}
    if args.resume and runs_csv.exists():
        for r in _read_rows(runs_csv):
            if r.get("status") == "ok":
                done[(r["arm"], int(r["seed"]))] = r
    out.mkdir(parents=True, exist_ok=True)
    jobs = []
    dirs = {a.name: _slug(a.name) for a in arms}
    if len(set(dirs.values())) != len(dirs):
        dirs = {a.name: f"{i:02d}_{_slug(a.name)}" for i, a in enumerate(arms)}
    for s in seeds:  # seed-major: a time budget leaves whole seeds, not whole arms
        for a in arms:
            if (a.name, s) in done:
                continue
            jobs.append(
                {
                    "arm": a.to_json(),
                    "seed": s,
                    "config": configs[(a.name, s)],
                    "run_dir": str(out / "runs" / dirs[a.name] / f"seed{s}"),
                    "proto_pause_at": pause_at,
                    "description": descriptions[a.name],
                    "keep_checkpoints": args.keep_checkpoints,
                }
            )
    threads = args.threads or 1
    on_cuda = devices[0].startswith("cuda")
    if args.workers is not None:
        workers = args.workers
    else:
        workers = min(6 * len(devices), _cores()) if on_cuda else max(1, _cores() // threads)
    workers = max(0, min(workers, len(jobs)))
    meta = {
        "protocol_name": protocol.name,
        "protocol_path": protocol.path,
        "protocol_sha256": protocol.sha256,
        "command": "hill-app compare " + " ".join(sys.argv[2:] if sys.argv[1:2] == ["compare"] else sys.argv[1:]),
        "device": device_text,
        "workers": workers,
        "threads_per_worker": threads,
        "method": args.method,
        "config": {k: v for k, v in first.items() if k != "seed"},
        "descriptions": descriptions,
        "planned_runs": len(arms) * len(seeds),
        "generated": "",
        "stopped": None,
    }
    total = len(jobs)
    print(
        f"compare: {len(arms)} arms x {len(seeds)} seeds = {len(arms) * len(seeds)} runs "
        f"({len(done)} already done) on {device_text}, {workers or 'no'} worker process(es) x {threads} thread(s)"
        f" -> {out}",
        file=sys.stderr,
        flush=True,
    )
    rows = list(done.values())
    t0 = time.perf_counter()
    failed = 0

    def record(row: dict[str, Any], k: int) -> None:
        nonlocal failed
        rows.append(row)
        with open(runs_csv, "a", newline="", encoding="utf-8") as f:
            w = csv.writer(f, lineterminator="\n")
            if f.tell() == 0:
                w.writerow(RUN_FIELDS)
            w.writerow([_csv(row.get(x)) for x in RUN_FIELDS])
        el = time.perf_counter() - t0
        eta = el / k * (total - k)
        base = next(
            (
                r["test_accuracy"]
                for r in rows
                if r["arm"] == "baseline" and r["seed"] == row["seed"] and r.get("status") == "ok"
            ),
            None,
        )
        if row["status"] == "ok":
            gain = (
                "" if base is None or row["arm"] == "baseline" else f" ({(row['test_accuracy'] - base) * 100:+.2f} pp)"
            )
            what = f"test {row['test_accuracy'] * 100:.2f}%{gain}"
        else:
            failed += 1
            what = f"FAILED: {row.get('error')}"
        print(
            f"[{k}/{total}] {row['arm']} seed {row['seed']}: {what} in {row['wall_seconds']:.1f} s | "
            f"{_fmt_s(el)} elapsed, about {_fmt_s(eta)} left",
            file=sys.stderr,
            flush=True,
        )

    stopped = None
    if workers == 0:
        for k, job in enumerate(jobs, 1):
            if args.time_budget is not None and time.perf_counter() - t0 > args.time_budget:
                stopped = f"stopped by --time-budget {args.time_budget:g} s"
                break
            record(run_one(job), k)
    else:
        stopped = _run_pool(jobs, workers, devices if on_cuda else [], threads, args.time_budget, record, t0)
    meta["stopped"] = stopped
    meta["generated"] = _dt.datetime.now().isoformat(timespec="seconds")
    meta["wall_seconds"] = time.perf_counter() - t0
    if args.resume and runs_csv.exists():
        rows = _dedupe(rows)
    write_outputs(out, arms, seeds, rows, args.method, meta)
    _, stats = analyse(arms, seeds, rows, args.method)
    key = "t" if args.method in ("t", "both") else "bootstrap"
    print(
        f"\n{'arm':<48} {'pairs':>5}  gain (pp) [95% interval, {'paired t' if key == 't' else 'bootstrap'}]",
        file=sys.stderr,
    )
    for s in stats:
        iv = s["intervals"][key]
        print(f"{s['arm'][:48]:<48} {s['n']:>5}  {fmt_interval(iv):<26} {iv.verdict}", file=sys.stderr)
    print(f"\npage: {out / 'index.html'}\ntable: {out / 'summary.csv'}", file=sys.stderr)
    if stopped:
        print(stopped, file=sys.stderr)
    return 1 if failed else 0


def _dedupe(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The last row of each (arm, seed), a finished one preferred."""
    best: dict[tuple[str, int], dict[str, Any]] = {}
    for r in rows:
        k = (r["arm"], int(r["seed"]))
        if k not in best or r.get("status") == "ok" or best[k].get("status") != "ok":
            best[k] = r
    return list(best.values())


def _run_pool(
    jobs: list[dict[str, Any]],
    workers: int,
    devices: list[str],
    threads: int,
    budget: float | None,
    record: Callable[[dict[str, Any], int], None],
    t0: float,
) -> str | None:
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    ctx = mp.get_context("spawn")  # CUDA cannot be forked; spawn also keeps CPU runs independent
    counter = ctx.Value("i", 0)
    stopped = None
    k = 0
    pending: dict[Any, dict[str, Any]] = {}
    queue = list(jobs)
    with ProcessPoolExecutor(
        max_workers=workers, mp_context=ctx, initializer=_init_worker, initargs=(devices, counter, threads)
    ) as ex:
        try:
            while queue or pending:
                over = budget is not None and time.perf_counter() - t0 > budget
                if over and queue:
                    stopped = f"stopped by --time-budget {budget:g} s: {len(queue)} run(s) not started"
                    queue.clear()
                while queue and len(pending) < workers:  # keep each worker busy, no more
                    job = queue.pop(0)
                    pending[ex.submit(run_one, job)] = job
                if not pending:
                    break
                finished, _ = wait(list(pending), timeout=5.0, return_when=FIRST_COMPLETED)
                for f in finished:
                    job = pending.pop(f)
                    k += 1
                    try:
                        row = f.result()
                    except Exception as e:  # noqa: BLE001 - a worker died: report the run, go on
                        row = {
                            "arm": job["arm"]["name"],
                            "seed": job["seed"],
                            "status": "failed",
                            "error": f"worker process failed: {type(e).__name__}: {e}"[:500],
                            "run_dir": job["run_dir"],
                            "wall_seconds": 0.0,
                        }
                    record(row, k)
        except KeyboardInterrupt:
            stopped = "interrupted"
            for f in pending:
                f.cancel()
            ex.shutdown(wait=False, cancel_futures=True)
    return stopped


def main(argv: list[str] | None = None) -> int:
    """`python -m hill_app.studies.compare ...`, the same as `hill-app compare ...`."""
    p = argparse.ArgumentParser(
        prog="hill-app compare", description="Scripted edit strategies against the no-edit baseline, paired by seed."
    )
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
