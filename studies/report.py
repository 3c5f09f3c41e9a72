"""`hill-app report STUDY_DIR`: the sessions of a study folder -> an HTML report, PNG figures and CSV tables.

Every number is read from the logs (run summaries, journals, snapshots, the study log), never typed in.
What each file holds and the checks the report makes: studies/README.md ("The report").
"""

from __future__ import annotations

import csv
import datetime as _dt
import html
import io
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hill_app.losses import (
    EditError,
    TargetLayout,
    apply_edits,
    layout_from_points,
    validate_edit,
)

from .questionnaires import (
    TLX_SCALES,
    AnswerError,
    tlx_raw,
    tlx_weighted,
    umux_lite_score,
    umux_lite_sus,
)
from .session_log import (
    STUDY_LOG,
    RunLog,
    next_snapshot,
    pause_snapshot,
    read_run,
    read_run_snapshots,
    read_study_log,
)
from .stats import PairedInterval, bootstrap, paired_t
from .strategies import LABELS, MIXTURE_SHARE, PauseStrategy, classify_pause, combine


class ReportError(ValueError):
    pass


@dataclass
class PauseResult:
    epoch: int
    seconds: float | None
    edits: list[dict]
    commits: int
    strategy: PauseStrategy
    z: np.ndarray | None = None
    labels: np.ndarray | None = None
    before: TargetLayout | None = None
    after: TargetLayout | None = None
    next_z: np.ndarray | None = None
    next_labels: np.ndarray | None = None
    next_epoch: int | None = None
    reproduces: bool | None = None  # the committed layout == the logged edits replayed on the snapshot


@dataclass
class ParticipantResult:
    pid: str
    dir: Path
    protocol: dict[str, Any]
    class_names: list[str] | None
    runs: dict[str, RunLog]
    complete: bool
    problems: list[str] = field(default_factory=list)
    pauses: dict[int, PauseResult] = field(default_factory=dict)
    umux: dict[str, Any] | None = None
    tlx: dict[str, Any] | None = None
    overall: PauseStrategy | None = None
    same_start: bool | None = None

    def acc(self, cond: str) -> float | None:
        r = self.runs.get(cond)
        return None if r is None or r.summary is None else float(r.summary["test_accuracy"])

    @property
    def gain(self) -> float | None:
        a, b = self.acc("hill"), self.acc("baseline")
        return None if a is None or b is None else a - b


# ---------------------------------------------------------------- reading


def find_participants(study_dir: Path) -> list[Path]:
    return sorted(p for p in Path(study_dir).iterdir() if p.is_dir() and (p / STUDY_LOG).exists())


def load_participant(pdir: Path) -> ParticipantResult:
    log = read_study_log(pdir)
    started = next((r for r in log if r["type"] == "session_started"), None)
    problems: list[str] = []
    if started is None:
        problems.append("the study log has no session_started record")
        started = {}
    proto = started.get("protocol", {})
    conds = started.get("conditions") or proto.get("conditions") or ["hill", "baseline"]
    runs: dict[str, RunLog] = {}
    for c in conds:
        if (pdir / c / "journal.jsonl").exists():
            runs[c] = read_run(pdir / c)
        else:
            problems.append(f"condition {c}: no run folder")
    for c, r in runs.items():
        if r.errors:
            problems.append(f"condition {c}: the run stopped with an error: {r.errors[-1].get('message')}")
        elif not r.complete:
            problems.append(f"condition {c}: the run did not finish")
        elif abs(float(r.finished["test_accuracy"]) - float(r.summary["test_accuracy"])) > 0:
            problems.append(f"condition {c}: summary.json and the journal disagree on the test accuracy")
    finished = any(r["type"] == "session_finished" for r in log)
    aborted = [r for r in log if r["type"] == "session_aborted"]
    if aborted:
        problems.append(f"session aborted: {aborted[-1].get('reason')}")
    elif not finished:
        problems.append("the session did not finish (no session_finished record)")
    complete = finished and not aborted and "hill" in runs and all(r.complete for r in runs.values())
    res = ParticipantResult(
        pid=pdir.name,
        dir=pdir,
        protocol=proto,
        class_names=started.get("class_names"),
        runs=runs,
        complete=complete,
        problems=problems,
    )
    _questionnaires(res, log)
    if "hill" in runs:
        _pauses(res, runs["hill"], proto)
        committed = [r for r in log if r["type"] == "edits_committed" and r.get("condition") == "hill"]
        n_journal = sum(len(p.commits) for p in runs["hill"].pauses)
        if len(committed) != n_journal:
            problems.append(
                f"the study log has {len(committed)} committed edit sets, the hill journal {n_journal} inside pauses"
            )
    if "hill" in runs and "baseline" in runs:
        res.same_start = _same_start(runs["hill"], runs["baseline"], proto.get("pause_at") or [])
        if res.same_start is False:
            problems.append("hill and baseline differ before the first pause although they share the seed")
    return res


def _questionnaires(res: ParticipantResult, log: list[dict]) -> None:
    for r in log:
        if r["type"] != "questionnaire":
            continue
        try:
            if r.get("name") == "umux_lite":
                s = umux_lite_score(r["answers"])
                res.umux = {"answers": r["answers"], "score": s, "sus_score": umux_lite_sus(r["answers"])}
                if r.get("score") is not None and abs(r["score"] - s) > 1e-9:
                    res.problems.append("UMUX-Lite: the logged score differs from the recomputed one")
            elif r.get("name") == "nasa_tlx":
                t: dict[str, Any] = {"ratings": r["ratings"], "raw": tlx_raw(r["ratings"]), "weighted": None}
                if r.get("pairwise") is not None:
                    t["weighted"] = tlx_weighted(r["ratings"], r["pairwise"])
                res.tlx = t
        except (AnswerError, KeyError) as e:
            res.problems.append(f"questionnaire {r.get('name')}: unreadable answers ({e})")


def _pauses(res: ParticipantResult, run: RunLog, proto: dict[str, Any]) -> None:
    snaps = read_run_snapshots(run.run_dir)
    epochs = proto.get("pause_at") or sorted({p.epoch for p in run.pauses if p.scheduled})
    for e in epochs:
        p = run.pause_at(e)
        if p is None:
            res.problems.append(f"no pause logged before epoch {e}")
            continue
        pr = PauseResult(
            epoch=e,
            seconds=p.seconds,
            edits=p.edits,
            commits=len(p.commits),
            strategy=classify_pause(p.edits),
            after=p.layout_after,
        )
        found = pause_snapshot(snaps, p)
        if found is not None:
            s = found[1]
            pr.z, pr.labels = s["z"], s["labels"]
            k = p.layout_after.num_classes if p.layout_after is not None else int(s["labels"].max()) + 1
            pr.before = layout_from_points(s["z"], s["labels"], k)
            pr.strategy = classify_pause(p.edits, pr.before, view_size=len(s["z"]))
            if p.layout_after is not None:
                try:
                    clean = [validate_edit(x, k, len(s["z"])) for x in p.edits]
                    again = apply_edits(pr.before, clean)
                    pr.reproduces = bool(
                        np.allclose(again.centers, p.layout_after.centers, atol=1e-5)
                        and np.allclose(again.spreads, p.layout_after.spreads, atol=1e-5)
                    )
                except EditError:  # an edit the engine accepted must replay; if not, say so
                    pr.reproduces = False
                if not pr.reproduces:
                    res.problems.append(
                        f"pause before epoch {e}: the committed layout does not follow from the "
                        "logged edits on the logged snapshot"
                    )
        else:
            res.problems.append(f"pause before epoch {e}: no snapshot in snapshots.h5")
        nxt = next_snapshot(snaps, p)
        if nxt is not None:
            pr.next_z, pr.next_labels, pr.next_epoch = nxt[1]["z"], nxt[1]["labels"], int(nxt[1]["epoch"])
        res.pauses[e] = pr
    res.overall = combine([pr.strategy for pr in res.pauses.values()])


def _same_start(hill: RunLog, base: RunLog, pause_at: list[int]) -> bool | None:
    """Same seed, same protocol: every epoch before the first pause must match exactly."""
    first = min(pause_at) if pause_at else None
    if first is None:
        return None
    shared = [e for e in range(1, first) if e in hill.epochs and e in base.epochs]
    if not shared:
        return None
    keys = ("train_loss", "val_accuracy", "val_loss")
    return all(hill.epochs[e].get(k) == base.epochs[e].get(k) for e in shared for k in keys)


# ---------------------------------------------------------------- the table


def pause_epochs(parts: list[ParticipantResult]) -> list[int]:
    return sorted({e for p in parts for e in (p.protocol.get("pause_at") or p.pauses.keys())})


def table_rows(parts: list[ParticipantResult]) -> tuple[list[str], list[dict[str, Any]]]:
    epochs = pause_epochs(parts)
    cols = ["participant", "complete", "test_accuracy", "baseline_test_accuracy", "gain"]
    cols += [f"pause_seconds_e{e}" for e in epochs] + ["mean_pause_seconds", "total_pause_seconds"]
    cols += [f"edits_e{e}" for e in epochs] + [f"strategy_e{e}" for e in epochs] + ["strategy_overall"]
    cols += ["umux_lite", "umux_lite_sus", "nasa_tlx_raw", "nasa_tlx_weighted"] + [f"tlx_{s}" for s in TLX_SCALES]
    rows = []
    for p in parts:
        r: dict[str, Any] = {
            "participant": p.pid,
            "complete": p.complete,
            "test_accuracy": p.acc("hill"),
            "baseline_test_accuracy": p.acc("baseline"),
            "gain": p.gain,
        }
        secs = []
        for e in epochs:
            pr = p.pauses.get(e)
            r[f"pause_seconds_e{e}"] = None if pr is None else pr.seconds
            r[f"edits_e{e}"] = None if pr is None else len(pr.edits)
            r[f"strategy_e{e}"] = None if pr is None else pr.strategy.text
            if pr is not None and pr.seconds is not None:
                secs.append(pr.seconds)
        r["mean_pause_seconds"] = sum(secs) / len(secs) if secs else None
        r["total_pause_seconds"] = sum(secs) if secs else None
        r["strategy_overall"] = None if p.overall is None else p.overall.text
        r["umux_lite"] = None if p.umux is None else p.umux["score"]
        r["umux_lite_sus"] = None if p.umux is None else p.umux["sus_score"]
        r["nasa_tlx_raw"] = None if p.tlx is None else p.tlx["raw"]
        r["nasa_tlx_weighted"] = None if p.tlx is None else p.tlx["weighted"]
        for s in TLX_SCALES:
            r[f"tlx_{s}"] = None if p.tlx is None else float(p.tlx["ratings"][s])
        rows.append(r)
    return cols, rows


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def summary_stats(cols: list[str], rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """n, mean and sample std (ddof=1; None for n < 2) of each numeric column over complete sessions."""
    out: dict[str, dict[str, Any]] = {}
    for c in cols:
        vals = [r[c] for r in rows if r.get("complete") and _is_num(r.get(c))]
        if not any(_is_num(r.get(c)) for r in rows):
            continue
        n = len(vals)
        mean = sum(vals) / n if n else None
        std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1)) if n >= 2 else None
        out[c] = {"n": n, "mean": mean, "std": std}
    return out


def gain_intervals(rows: list[dict[str, Any]], level: float = 0.95) -> dict[str, PairedInterval]:
    """The mean gain (HILL - the same session's baseline) over complete sessions, with its interval by both
    methods (the numbers `hill-app compare` prints for scripted strategies)."""
    gains = [r["gain"] for r in rows if r.get("complete") and _is_num(r.get("gain"))]
    return {"t": paired_t(gains, level), "bootstrap": bootstrap(gains, level)}


def _csv_value(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    return str(v)


def write_csvs(
    out: Path,
    cols: list[str],
    rows: list[dict[str, Any]],
    stats: dict[str, dict[str, Any]],
    gains: dict[str, PairedInterval] | None = None,
) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for r in rows:
        w.writerow([_csv_value(r.get(c)) for c in cols])
    (out / "results.csv").write_text(buf.getvalue(), encoding="utf-8")
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["column", "n", "mean", "std"])
    for c, s in stats.items():
        w.writerow([c, s["n"], _csv_value(s["mean"]), _csv_value(s["std"])])
    (out / "summary.csv").write_text(buf.getvalue(), encoding="utf-8")
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["quantity", "method", "level", "n", "mean", "sd", "ci_low", "ci_high", "verdict", "wins", "losses"])
    for iv in (gains or gain_intervals(rows)).values():
        w.writerow(
            [
                "gain",
                iv.method,
                iv.level,
                iv.n,
                _csv_value(iv.mean),
                _csv_value(iv.sd),
                _csv_value(iv.lo),
                _csv_value(iv.hi),
                iv.verdict,
                iv.wins,
                iv.losses,
            ]
        )
    (out / "paired_gain.csv").write_text(buf.getvalue(), encoding="utf-8")


# ---------------------------------------------------------------- figures


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def _curve(run: RunLog, key: str = "val_accuracy") -> tuple[list[int], list[float]]:
    eps = sorted(run.epochs)
    return eps, [float(run.epochs[e].get(key, float("nan"))) for e in eps]


def make_figures(parts: list[ParticipantResult], fig_dir: Path) -> dict[str, Any]:
    from . import figures as F

    fig_dir.mkdir(parents=True, exist_ok=True)
    made: dict[str, Any] = {"overview": None, "accuracy": {}, "pauses": {}}
    epochs = pause_epochs(parts)
    series = []
    baselines = []
    for i, p in enumerate(parts):
        color = F.PALETTE[i % len(F.PALETTE)]
        if "hill" in p.runs:
            x, y = _curve(p.runs["hill"])
            series.append({"label": f"{p.pid} (hill)", "x": x, "y": y, "color": color})
        if "baseline" in p.runs:
            baselines.append((p, color, _curve(p.runs["baseline"])))
    if baselines:
        if all(b[2] == baselines[0][2] for b in baselines):
            x, y = baselines[0][2]
            series.append({"label": "baseline (no edits)", "x": x, "y": y, "color": "#000000", "dashed": True})
        else:
            for p, color, (x, y) in baselines:
                series.append({"label": f"{p.pid} baseline", "x": x, "y": y, "color": color, "dashed": True})
    if series:
        made["overview"] = F.accuracy_figure(
            fig_dir / "accuracy_all.png",
            series,
            epochs,
            title="Validation accuracy per epoch: participants vs baseline",
        ).name
    for i, p in enumerate(parts):
        s = []
        if "hill" in p.runs:
            x, y = _curve(p.runs["hill"])
            s.append({"label": "hill (participant)", "x": x, "y": y, "color": F.PALETTE[i % len(F.PALETTE)]})
        if "baseline" in p.runs:
            x, y = _curve(p.runs["baseline"])
            s.append({"label": "baseline (no edits)", "x": x, "y": y, "color": "#000000", "dashed": True})
        if s:
            made["accuracy"][p.pid] = F.accuracy_figure(
                fig_dir / f"{_safe(p.pid)}_accuracy.png",
                s,
                p.protocol.get("pause_at") or epochs,
                title=f"{p.pid}: validation accuracy per epoch",
            ).name
        for e, pr in sorted(p.pauses.items()):
            if pr.z is None:
                continue
            k = pr.before.num_classes
            panels = [
                {
                    "title": f"before: after epoch {e - 1}",
                    "z": pr.z,
                    "labels": pr.labels,
                    "centers_to": pr.before.centers,
                }
            ]
            if pr.after is not None:
                pts = sorted(pr.after.points)
                panels.append(
                    {
                        "title": f"edited: {len(pr.edits)} edit(s), {pr.strategy.text}",
                        "z": pr.z,
                        "labels": pr.labels,
                        "faded": True,
                        "centers_from": pr.before.centers,
                        "centers_to": pr.after.centers,
                        # circles only where the spread target differs from the spread at the pause
                        "spreads_to": np.where(
                            np.abs(pr.after.spreads - pr.before.spreads) > 1e-9, pr.after.spreads, np.nan
                        ),
                        "points_from": pr.z[pts] if pts else None,
                        "points_to": np.array([pr.after.points[j] for j in pts]) if pts else None,
                    }
                )
            else:
                panels.append({"title": "edited: no edits", "z": pr.z, "labels": pr.labels, "faded": True})
            if pr.next_z is not None:
                nl = layout_from_points(pr.next_z, pr.next_labels, k)
                panels.append(
                    {
                        "title": f"after: trained to epoch {pr.next_epoch}",
                        "z": pr.next_z,
                        "labels": pr.next_labels,
                        "centers_to": nl.centers,
                    }
                )
            made["pauses"][(p.pid, e)] = F.layout_figure(
                fig_dir / f"{_safe(p.pid)}_pause_e{e}.png",
                panels,
                k,
                p.class_names,
                title=f"{p.pid}: latent layout at the pause before epoch {e}",
            ).name
    return made


# ---------------------------------------------------------------- HTML

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1200px;color:#222;
line-height:1.4;padding:0 1em}
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:2em;border-bottom:1px solid #ddd}h3{font-size:1.05em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}th,td{border:1px solid #ccc;padding:.25em .55em;
text-align:right}th{background:#f3f3f3}td.l,th.l{text-align:left}tr.stat td{background:#fafafa;font-style:italic}
tr.incomplete td{color:#999}.bad{color:#b00}.ok{color:#070}img{max-width:100%;border:1px solid #eee}
code{background:#f5f5f5;padding:0 .2em}.small{font-size:.85em;color:#555}
"""


def _e(v: Any) -> str:
    return html.escape(str(v))


def _pct(v: Any, signed: bool = False) -> str:
    if not _is_num(v):
        return "&ndash;"
    return f"{v * 100:+.2f}" if signed else f"{v * 100:.2f}"


def _num(v: Any, digits: int = 1) -> str:
    return f"{v:.{digits}f}" if _is_num(v) else "&ndash;"


def _gain_html(gains: dict[str, PairedInterval]) -> str:
    """The paired gain over participants with its 95% interval by both methods, and what it means."""
    t, b = gains["t"], gains["bootstrap"]
    if t.n == 0:
        return "<p class='small'>No complete session with both conditions: no paired gain.</p>"
    rows = []
    for iv in (t, b):
        ci = "&ndash;" if iv.lo is None else f"[{iv.lo * 100:+.2f}, {iv.hi * 100:+.2f}]"
        rows.append(
            f"<tr><td class='l'>{_e(iv.method)}</td><td>{iv.n}</td><td>{_pct(iv.mean, signed=True)}</td>"
            f"<td>{ci}</td><td>{iv.wins} / {iv.losses}</td><td class='l'>{_e(iv.note())}</td></tr>"
        )
    return (
        "<h3>Paired gain over participants</h3><p class='small'>Each participant's HILL run against the "
        "baseline of the same session (same protocol and seed): the mean of the per-session gains with "
        "its 95% interval. Scripted strategies are measured the same way by <code>hill-app compare</code>."
        "</p><table><tr><th class='l'>interval</th><th>sessions</th><th>mean gain (pp)</th>"
        "<th>95% interval (pp)</th><th>better / worse</th><th class='l'>note</th></tr>" + "".join(rows) + "</table>"
    )


def render_html(
    parts: list[ParticipantResult],
    cols: list[str],
    rows: list[dict[str, Any]],
    stats: dict[str, dict[str, Any]],
    figs: dict[str, Any],
    study_dir: Path,
) -> str:
    epochs = pause_epochs(parts)
    protos = {p.protocol.get("sha256") for p in parts}
    proto = dict(parts[0].protocol) if parts else {}
    hill_cfg = next((p.runs["hill"].config for p in parts if "hill" in p.runs), {})
    if proto.get("model") is None and hill_cfg.get("model"):
        proto["model"] = hill_cfg["model"]
    out = [
        (
            f"<!doctype html><html><head><meta charset='utf-8'><title>Study report: {_e(proto.get('name', ''))}"
            f"</title><style>{CSS}</style></head><body>"
        )
    ]
    out.append(f"<h1>Study report: {_e(proto.get('name', study_dir.name))}</h1>")
    n_ok = sum(p.complete for p in parts)
    out.append(
        f"<p class='small'>{len(parts)} participant session(s), {n_ok} complete; study folder "
        f"<code>{_e(study_dir)}</code>; generated {_dt.datetime.now().isoformat(timespec='seconds')} by "
        "<code>hill-app report</code>. Every number below is read from the sessions' logs.</p>"
    )

    out.append("<h2>Protocol</h2><table>")
    for k, label in (
        ("dataset", "data set"),
        ("model", "model"),
        ("epochs", "epochs"),
        ("pause_at", "pauses before epochs"),
        ("seconds_per_pause", "seconds per pause"),
        ("alpha", "alpha"),
        ("lam", "lambda"),
        ("seed", "seed"),
        ("conditions", "conditions"),
        ("panels", "panels allowed"),
        ("sha256", "protocol file SHA-256"),
    ):
        v = proto.get(k)
        v = ", ".join(map(str, v)) if isinstance(v, list) else v
        out.append(f"<tr><th class='l'>{label}</th><td class='l'>{_e(v if v is not None else 'default')}</td></tr>")
    out.append("</table>")
    if len(protos) > 1:
        out.append(
            "<p class='bad'>The sessions did not all run the same protocol file (their SHA-256 differ); "
            "compare them with care.</p>"
        )

    # main table
    out.append("<h2>Results per participant</h2>")
    out.append(
        "<p class='small'>Test accuracy of the final model (%), gain = HILL &minus; baseline in percentage "
        "points (baseline: the same protocol and seed with no edits), seconds spent in each pause, "
        "UMUX-Lite (0&ndash;100) and its SUS-predicted score, raw NASA-TLX (0&ndash;100; weighted where "
        "the pairwise comparisons were answered).</p>"
    )
    head = (
        ["participant", "test acc.", "baseline", "gain (pp)"]
        + [f"pause {e} (s)" for e in epochs]
        + ["mean pause (s)", "UMUX-Lite", "UMUX-Lite (SUS)", "NASA-TLX raw", "NASA-TLX weighted"]
    )
    out.append(
        "<table><tr>" + "".join(f"<th{' class=l' if i == 0 else ''}>{h}</th>" for i, h in enumerate(head)) + "</tr>"
    )
    for r in rows:
        cls = "" if r["complete"] else " class='incomplete'"
        cells = [
            _e(r["participant"]) + ("" if r["complete"] else " (incomplete)"),
            _pct(r["test_accuracy"]),
            _pct(r["baseline_test_accuracy"]),
            _pct(r["gain"], signed=True),
        ]
        cells += [_num(r[f"pause_seconds_e{e}"]) for e in epochs]
        cells += [
            _num(r["mean_pause_seconds"]),
            _num(r["umux_lite"]),
            _num(r["umux_lite_sus"]),
            _num(r["nasa_tlx_raw"]),
            _num(r["nasa_tlx_weighted"]),
        ]
        out.append(
            f"<tr{cls}>" + "".join(f"<td{' class=l' if i == 0 else ''}>{c}</td>" for i, c in enumerate(cells)) + "</tr>"
        )
    stat_cols = (
        ["test_accuracy", "baseline_test_accuracy", "gain"]
        + [f"pause_seconds_e{e}" for e in epochs]
        + ["mean_pause_seconds", "umux_lite", "umux_lite_sus", "nasa_tlx_raw", "nasa_tlx_weighted"]
    )
    fmts = [_pct, _pct, lambda v: _pct(v, signed=True)] + [_num] * (len(stat_cols) - 3)
    for which in ("mean", "std"):
        cells = [f"{which} (n = {n_ok})"]
        for c, f in zip(stat_cols, fmts):
            s = stats.get(c)
            cells.append(f(s[which]) if s is not None and s[which] is not None else "&ndash;")
        out.append(
            "<tr class='stat'>"
            + "".join(f"<td{' class=l' if i == 0 else ''}>{c}</td>" for i, c in enumerate(cells))
            + "</tr>"
        )
    out.append("</table>")
    out.append(_gain_html(gain_intervals(rows)))
    out.append(
        "<p class='small'>As CSV: <a href='results.csv'>results.csv</a> (one row per participant, "
        "accuracies as fractions, full precision), <a href='summary.csv'>summary.csv</a> (n, mean, "
        "sample std over complete sessions) and <a href='paired_gain.csv'>paired_gain.csv</a> (the gain's "
        "intervals).</p>"
    )

    # strategies
    out.append("<h2>Strategies</h2>")
    out.append(
        "<p class='small'>Classified from each pause's committed edits (rules in <code>studies/"
        f"strategies.py</code>): a label whose share of a pause's edits is at least {MIXTURE_SHARE:g} is "
        "substantial; two or more substantial labels make a mixture.</p>"
    )
    out.append(
        "<table><tr><th class='l'>participant</th>"
        + "".join(f"<th class='l'>pause {e}</th>" for e in epochs)
        + "<th class='l'>overall</th></tr>"
    )
    for p in parts:
        cells = [
            f"{_e(p.pauses[e].strategy.text)} ({len(p.pauses[e].edits)})" if e in p.pauses else "&ndash;"
            for e in epochs
        ]
        out.append(
            f"<tr><td class='l'>{_e(p.pid)}</td>"
            + "".join(f"<td class='l'>{c}</td>" for c in cells)
            + f"<td class='l'>{_e(p.overall.text if p.overall else '')}</td></tr>"
        )
    out.append("</table>")
    labels = list(LABELS) + ["mixture", "other", "none"]
    out.append(
        "<table><tr><th class='l'>strategy</th>"
        + "".join(f"<th>pause {e}</th>" for e in epochs)
        + "<th>all pauses</th></tr>"
    )
    for lab in labels:
        per = [sum(1 for p in parts if e in p.pauses and p.pauses[e].strategy.label == lab) for e in epochs]
        out.append(
            f"<tr><td class='l'>{lab}</td>" + "".join(f"<td>{v}</td>" for v in per) + f"<td>{sum(per)}</td></tr>"
        )
    out.append("</table>")

    if figs.get("overview"):
        out.append(
            f"<h2>Accuracy over epochs</h2><img src='figures/{_e(figs['overview'])}' "
            "alt='validation accuracy per epoch, all participants and the baseline'>"
        )

    # per participant
    out.append("<h2>Sessions</h2>")
    for p in parts:
        out.append(f"<h3 id='{_e(_safe(p.pid))}'>{_e(p.pid)}</h3>")
        if p.problems:
            out.append("<ul>" + "".join(f"<li class='bad'>{_e(x)}</li>" for x in p.problems) + "</ul>")
        if p.same_start is not None:
            out.append(
                f"<p class='small'>HILL and baseline identical before the first pause (same seed): "
                f"<span class='{'ok' if p.same_start else 'bad'}'>{'yes' if p.same_start else 'no'}"
                "</span></p>"
            )
        if p.pid in figs["accuracy"]:
            out.append(f"<img src='figures/{_e(figs['accuracy'][p.pid])}' alt='accuracy of {_e(p.pid)}'>")
        out.append(
            "<table><tr><th>pause</th><th>seconds</th><th>commits</th><th>edits</th>"
            "<th class='l'>strategy</th><th class='l'>edits by label</th><th class='l'>ops</th></tr>"
        )
        for e, pr in sorted(p.pauses.items()):
            by = ", ".join(f"{k} {v}" for k, v in pr.strategy.counts.items() if v)
            ops = ", ".join(x.get("op", "?") + (f":{x['name']}" if x.get("op") == "strategy" else "") for x in pr.edits)
            out.append(
                f"<tr><td>{e}</td><td>{_num(pr.seconds, 2)}</td><td>{pr.commits}</td><td>{len(pr.edits)}</td>"
                f"<td class='l'>{_e(pr.strategy.text)}</td><td class='l'>{_e(by)}</td>"
                f"<td class='l'>{_e(ops)}</td></tr>"
            )
        out.append("</table>")
        for e in sorted(p.pauses):
            name = figs["pauses"].get((p.pid, e))
            if name:
                out.append(f"<p><img src='figures/{_e(name)}' alt='layouts of {_e(p.pid)} at pause {e}'></p>")

    out.append(
        "<h2>Definitions</h2><ul class='small'>"
        "<li>Test accuracy: <code>summary.json</code> of each condition's run folder (the final model on "
        "the test split). Curves: validation accuracy from the journals' epoch records.</li>"
        "<li>Pause time: from the journal's <code>paused</code> record to its <code>resumed</code> "
        "record.</li>"
        "<li>UMUX-Lite = ((item 1 &minus; 1) + (item 2 &minus; 1)) / 12 &times; 100; SUS-predicted = "
        "0.65 &times; UMUX-Lite + 22.9 (Lewis et al. 2013).</li>"
        "<li>NASA-TLX raw = mean of the six 0&ndash;100 ratings; weighted = &Sigma; weight &times; rating "
        "/ 15 with weights from the 15 pairwise comparisons.</li>"
        "<li>Layout figures: the view set at the pause (before), the teacher layout the edits made "
        "(arrows: class centres and moved points; dashed circles: target spreads) and the view set "
        "after training on to the next pause or the end (after).</li></ul>"
    )
    out.append("</body></html>")
    return "\n".join(out)


# ---------------------------------------------------------------- entry


def build_report(study_dir: str | Path, out: str | Path | None = None, figures: bool = True) -> Path:
    study_dir = Path(study_dir)
    if not study_dir.is_dir():
        raise ReportError(f"{study_dir}: no such study folder")
    pdirs = find_participants(study_dir)
    if not pdirs:
        raise ReportError(f"{study_dir}: no participant sessions (folders with {STUDY_LOG}) found")
    out = Path(out) if out is not None else study_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    parts = [load_participant(p) for p in pdirs]
    cols, rows = table_rows(parts)
    stats = summary_stats(cols, rows)
    write_csvs(out, cols, rows, stats, gain_intervals(rows))
    figs = make_figures(parts, out / "figures") if figures else {"overview": None, "accuracy": {}, "pauses": {}}
    (out / "index.html").write_text(render_html(parts, cols, rows, stats, figs, study_dir), encoding="utf-8")
    return out / "index.html"
