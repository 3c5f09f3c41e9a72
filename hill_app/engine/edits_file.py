"""The edits file: a script of interventions applied when training pauses at the named epochs.

    {"interventions": [{"epoch": 25, "edits": [...], "commands": [{"command": ..., "args": {...}}]}]}

It is checked whole before training starts; a malformed file is refused naming the entry and the problem.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hill_app.losses import EditError, validate_edit

from .commands import SPECS, CommandContext, CommandError


class EditsFileError(ValueError):
    pass


@dataclass
class Intervention:
    epoch: int
    edits: list[dict[str, Any]] = field(default_factory=list)
    commands: list[dict[str, Any]] = field(default_factory=list)


def parse_edits(
    data: Any,
    *,
    pause_at: list[int],
    num_classes: int,
    view_size: int,
    source: str = "edits",
    context: CommandContext | None = None,
) -> list[Intervention]:
    """Check the whole file. With ``context`` (the data and the model the run will train, see
    ``handlers.context_for``) every command is also checked against them: indices in range, layers and
    hyperparameters that exist, files that can be read, checkpoints that exist."""
    if not isinstance(data, dict) or not isinstance(data.get("interventions"), list):
        raise EditsFileError(f"{source}: expected an object with a list 'interventions'")
    extra = set(data) - {"interventions", "description", "questionnaire"}
    if extra:
        raise EditsFileError(f"{source}: unexpected top-level key(s) {sorted(extra)}")
    out: list[Intervention] = []
    seen: set[int] = set()
    adds_from = _first_add_epoch(data["interventions"])
    for i, entry in enumerate(data["interventions"]):
        where = f"{source}: interventions[{i}]"
        if not isinstance(entry, dict):
            raise EditsFileError(f"{where}: expected an object, got {type(entry).__name__}")
        bad = set(entry) - {"epoch", "edits", "commands", "note"}
        if bad:
            raise EditsFileError(f"{where}: unexpected key(s) {sorted(bad)}")
        ep = entry.get("epoch")
        if isinstance(ep, bool) or not isinstance(ep, int):
            raise EditsFileError(f"{where}: 'epoch' must be an integer, got {ep!r}")
        if ep not in pause_at:
            raise EditsFileError(
                f"{where}: epoch {ep} is not a pause epoch (pauses: "
                f"{', '.join(map(str, pause_at)) or 'none'}); edits apply only when training pauses"
            )
        if ep in seen:
            raise EditsFileError(f"{where}: a second intervention for epoch {ep}; put all its edits in one entry")
        seen.add(ep)
        edits = entry.get("edits", [])
        if not isinstance(edits, list):
            raise EditsFileError(f"{where}: 'edits' must be a list")
        try:
            [validate_edit(e, num_classes, view_size, where=f"{where}.edits[{j}]") for j, e in enumerate(edits)]
        except EditError as e:
            raise EditsFileError(str(e)) from None
        cmds = entry.get("commands", [])
        if not isinstance(cmds, list):
            raise EditsFileError(f"{where}: 'commands' must be a list")
        for j, c in enumerate(cmds):
            cw = f"{where}.commands[{j}]"
            if not isinstance(c, dict) or not isinstance(c.get("command"), str):
                raise EditsFileError(f"{cw}: expected {{\"command\": name, \"args\": {{...}}}}")
            spec = SPECS.get(c["command"])
            if spec is None:
                raise EditsFileError(f"{cw}: unknown command {c['command']!r}")
            if c["command"] in ("pause_training", "resume_training"):
                raise EditsFileError(f"{cw}: {c['command']} is implied by the intervention itself")
            bad_keys = set(c) - {"command", "args"}
            if bad_keys:
                raise EditsFileError(f"{cw}: unexpected key(s) {sorted(bad_keys)}")
            ctx = context
            if ctx is not None and ctx.n_train is not None and ep >= adds_from:
                # samples added at this pause or an earlier one get the next indices: a drop may name them,
                # so its range is checked when it is applied
                ctx = dataclasses.replace(ctx, n_train=None)
            try:
                spec.check_args(c.get("args", {}), ctx)
            except CommandError as e:
                raise EditsFileError(f"{cw}: {e}") from None
        out.append(Intervention(ep, [dict(e) for e in edits], list(cmds)))
    return sorted(out, key=lambda iv: iv.epoch)


def _first_add_epoch(entries: list[Any]) -> float:
    """The first pause whose commands add samples (inf when none does); entries not yet checked."""
    first = math.inf
    for entry in entries:
        if isinstance(entry, dict) and isinstance(entry.get("epoch"), int) and isinstance(entry.get("commands"), list):
            for c in entry["commands"]:
                if (
                    isinstance(c, dict)
                    and c.get("command") == "update_dataset"
                    and isinstance(c.get("args"), dict)
                    and c["args"].get("action") == "add"
                ):
                    first = min(first, entry["epoch"])
    return first


def load_edits_file(path: str | Path, **kw: Any) -> list[Intervention]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise EditsFileError(f"{path}: cannot read the edits file ({e.strerror or e})") from None
    except UnicodeDecodeError as e:
        raise EditsFileError(f"{path}: not UTF-8 text (byte {e.start}); expected a JSON edits file") from None
    try:
        data = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as e:
        raise EditsFileError(f"{path} line {e.lineno} column {e.colno}: not valid JSON ({e.msg})") from None
    except RecursionError:
        raise EditsFileError(f"{path}: nested too deeply to be an edits file") from None
    except ValueError as e:  # e.g. an integer of more than 4300 digits, NaN or Infinity
        raise EditsFileError(f"{path}: {_value_error(e)}") from None
    try:
        return parse_edits(data, source=str(path), **kw)
    except RecursionError:
        raise EditsFileError(f"{path}: nested too deeply to be an edits file") from None


def _value_error(e: ValueError) -> str:
    """Python's own words for a too-long integer name a Python setting; say what the file may hold instead."""
    m = re.search(r"limit \((\d+) digits\).*value has (\d+) digits", str(e))
    if m:
        return f"an integer of {m.group(2)} digits; expected numbers of at most {m.group(1)} digits"
    return str(e)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number an edits file may hold (expected finite numbers)")


def scripted_pause_handler(interventions: list[Intervention]) -> Any:
    """A pause handler that plays a script: at a scheduled pause, commit that pause's edits, send its
    commands and resume. Each intervention is played once per branch. Any other pause (a non-finite loss,
    a pause asked for by a command) is not the script's: with no human to decide, the run is stopped,
    with the pause's reason."""
    by_epoch = {iv.epoch: iv for iv in interventions}
    played: set[tuple[str, int]] = set()

    def handler(session: Any, info: Any) -> None:
        reason = str(getattr(info, "reason", "scheduled pause"))
        if not reason.startswith("scheduled pause"):
            session.submit("stop_training", {"reason": f"stopped by the script: {reason}"[:500]}, source="script")
            return
        key = (str(getattr(session, "branch", "main")), int(info.epoch))
        iv = by_epoch.get(info.epoch)
        if iv is not None and key not in played:
            played.add(key)
            if iv.edits:
                session.submit("set_latent_targets", {"edits": iv.edits}, source="script")
            for c in iv.commands:
                session.submit(c["command"], c.get("args", {}), source="script")
        session.submit("resume_training", {}, source="script")

    return handler
