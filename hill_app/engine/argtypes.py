"""Typed argument schemas for commands: each type checks a JSON value and describes itself as JSON Schema.

One schema does all the checking that does not depend on the moment (types, ranges, names that exist in
the data and the model); handlers keep only the checks that depend on the state at apply time (paused or
not, the current training-set size). The same schema validates the edits file, builds the window's
controls and is served by the control API.
"""

from __future__ import annotations

import math
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import CommandError

MAX_LIST = 1_000_000  # indices, points: bounded so a crafted message cannot exhaust memory
MAX_ADD_FILE_BYTES = 2 << 30  # update_dataset add: at most 2 GiB


@dataclass(frozen=True)
class CommandContext:
    """Facts about the run that arguments are checked against. ``None`` means: not known here, the
    handler checks it when the command is applied."""

    num_classes: int | None = None
    n_train: int | None = None
    view_size: int | None = None
    optimizer: str | None = None
    optimizer_hparams: frozenset[str] | None = None
    nesterov: bool | None = None  # Nesterov SGD (its momentum cannot become 0)
    n_param_groups: int | None = None
    layers: dict[str, str] | None = None  # name -> "dropout" | "batchnorm" | "params" | "other"
    checkpoint_uuids: frozenset[str] | None = None
    check_files: bool = False  # look at paths on disk (edits file, before training)


class ArgType:
    def check(self, v: Any, ctx: CommandContext) -> Any:
        raise NotImplementedError

    def schema(self) -> dict[str, Any]:
        raise NotImplementedError


def _is_number(v: Any) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float))


@dataclass(frozen=True)
class Number(ArgType):
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    integer: bool = False

    def check(self, v: Any, ctx: CommandContext) -> Any:
        if not _is_number(v) or (self.integer and not isinstance(v, int)):
            raise CommandError(f"expected {'an integer' if self.integer else 'a number'}, got {_short(v)}")
        if isinstance(v, int) and abs(v) > 2**63:
            raise CommandError(f"expected a number of at most 2**63 in size, got one of {v.bit_length()} bits")
        if not math.isfinite(v):
            raise CommandError(f"expected a finite number, got {v!r}")
        if self.lo is not None and (v < self.lo or (self.lo_open and v == self.lo)):
            raise CommandError(f"must be {'>' if self.lo_open else '>='} {self.lo}, got {v}")
        if self.hi is not None and (v > self.hi or (self.hi_open and v == self.hi)):
            raise CommandError(f"must be {'<' if self.hi_open else '<='} {self.hi}, got {v}")
        return v

    def schema(self) -> dict[str, Any]:
        s: dict[str, Any] = {"type": "integer" if self.integer else "number"}
        if self.lo is not None:
            s["exclusiveMinimum" if self.lo_open else "minimum"] = self.lo
        if self.hi is not None:
            s["exclusiveMaximum" if self.hi_open else "maximum"] = self.hi
        return s


@dataclass(frozen=True)
class Text(ArgType):
    max_len: int = 200

    def check(self, v: Any, ctx: CommandContext) -> Any:
        if not isinstance(v, str) or not v or len(v) > self.max_len:
            raise CommandError(f"expected a non-empty string of at most {self.max_len} characters, got {_short(v)}")
        return v

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "minLength": 1, "maxLength": self.max_len}


@dataclass(frozen=True)
class Boolean(ArgType):
    def check(self, v: Any, ctx: CommandContext) -> Any:
        if not isinstance(v, bool):
            raise CommandError(f"expected true or false, got {_short(v)}")
        return v

    def schema(self) -> dict[str, Any]:
        return {"type": "boolean"}


@dataclass(frozen=True)
class Choice(ArgType):
    choices: tuple[str, ...]

    def check(self, v: Any, ctx: CommandContext) -> Any:
        if not isinstance(v, str) or v not in self.choices:
            raise CommandError(f"expected one of {', '.join(self.choices)}, got {_short(v)}")
        return v

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "enum": list(self.choices)}


@dataclass(frozen=True)
class Nullable(ArgType):
    inner: ArgType

    def check(self, v: Any, ctx: CommandContext) -> Any:
        return None if v is None else self.inner.check(v, ctx)

    def schema(self) -> dict[str, Any]:
        return {"anyOf": [self.inner.schema(), {"type": "null"}]}


@dataclass(frozen=True)
class Pair(ArgType):
    """Two numbers, e.g. Adam's betas."""

    item: Number

    def check(self, v: Any, ctx: CommandContext) -> Any:
        if not isinstance(v, (list, tuple)) or len(v) != 2:
            raise CommandError(f"expected a list of two numbers, got {_short(v)}")
        return [self.item.check(x, ctx) for x in v]

    def schema(self) -> dict[str, Any]:
        return {"type": "array", "items": self.item.schema(), "minItems": 2, "maxItems": 2}


@dataclass(frozen=True)
class TrainIndices(ArgType):
    """Indices of training samples (as numbered when the run started, added samples after them)."""

    def check(self, v: Any, ctx: CommandContext) -> Any:
        if not isinstance(v, list) or not v:
            raise CommandError("expected a non-empty list of training-sample indices")
        if len(v) > MAX_LIST:
            raise CommandError(f"at most {MAX_LIST} indices, got {len(v)}")
        for i in v:
            if isinstance(i, bool) or not isinstance(i, int) or i < 0:
                raise CommandError(f"indices must be integers >= 0, got {_short(i)}")
            if ctx.n_train is not None and i >= ctx.n_train:
                raise CommandError(
                    f"index {i} is out of range: the training split has {ctx.n_train} samples (0..{ctx.n_train - 1})"
                )
        return list(v)

    def schema(self) -> dict[str, Any]:
        return {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 1, "maxItems": MAX_LIST}


@dataclass(frozen=True)
class ClassWeights(ArgType):
    """Per-class sampling weights: a list of K numbers, an object {class: weight} (others 1), or null."""

    def check(self, v: Any, ctx: CommandContext) -> Any:
        if v is None:
            return None
        k = ctx.num_classes
        if isinstance(v, dict):
            out: dict[str, float] = {}
            for c, w in v.items():
                try:
                    ci = int(c)
                except (TypeError, ValueError):
                    raise CommandError(f"class_weights keys must be class indices, got {_short(c)}") from None
                if ci < 0 or (k is not None and ci >= k):
                    raise CommandError(f"class {ci} does not exist (0..{(k or 1) - 1})")
                out[str(ci)] = self._weight(w)
            if k is not None and len(out) == k and not any(out.values()):
                raise CommandError("at least one weight must be > 0 (the classes not named keep weight 1)")
            return out
        if not isinstance(v, list) or (k is not None and len(v) != k):
            raise CommandError(
                f"class_weights must be a list of {k if k is not None else 'K'} numbers or an object {{class: weight}}"
            )
        w = [self._weight(x) for x in v]
        if sum(w) <= 0:
            raise CommandError("at least one weight must be > 0")
        return w

    @staticmethod
    def _weight(w: Any) -> float:
        if not _is_number(w) or not math.isfinite(w) or w < 0:
            raise CommandError(f"weights must be finite numbers >= 0, got {_short(w)}")
        return w

    def schema(self) -> dict[str, Any]:
        return {
            "anyOf": [
                {"type": "array", "items": {"type": "number", "minimum": 0}},
                {"type": "object", "additionalProperties": {"type": "number", "minimum": 0}},
                {"type": "null"},
            ]
        }


@dataclass(frozen=True)
class Edits(ArgType):
    """A list of latent edits (see losses.targets.validate_edit), checked against the classes and view set."""

    max_edits: int = 100_000

    def check(self, v: Any, ctx: CommandContext) -> Any:
        from hill_app.losses import EditError, validate_edit

        if not isinstance(v, list):
            raise CommandError("'edits' must be a list of edit objects")
        if len(v) > self.max_edits:
            raise CommandError(f"at most {self.max_edits} edits in one commit, got {len(v)}")
        if ctx.num_classes is None or ctx.view_size is None:
            for i, e in enumerate(v):
                if not isinstance(e, dict) or not isinstance(e.get("op"), str):
                    raise CommandError(f"edits[{i}]: an edit must be an object with an 'op'")
            return v
        for i, e in enumerate(v):
            try:
                validate_edit(e, ctx.num_classes, ctx.view_size, where=f"edits[{i}]")
            except EditError as err:
                raise CommandError(str(err)) from None
        return v

    def schema(self) -> dict[str, Any]:
        return {
            "type": "array",
            "maxItems": self.max_edits,
            "items": {
                "type": "object",
                "required": ["op"],
                "properties": {
                    "op": {
                        "type": "string",
                        "enum": ["move_center", "scale_spread", "move_points", "merge", "separate", "strategy"],
                    }
                },
            },
        }


@dataclass(frozen=True)
class LayerName(ArgType):
    """A module of the model by its dotted name; ``kind`` restricts it (dropout, batchnorm, params)."""

    kind: str | None = None

    def check(self, v: Any, ctx: CommandContext) -> Any:
        Text(200).check(v, ctx)
        if ctx.layers is None:
            return v
        if v not in ctx.layers:
            names = [n for n in ctx.layers][:40]
            raise CommandError(
                f"no layer named {v!r}; layers: {', '.join(names)}" + (" ..." if len(ctx.layers) > 40 else "")
            )
        return v

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "minLength": 1, "maxLength": 200, "description": "dotted module name"}


@dataclass(frozen=True)
class CheckpointId(ArgType):
    def check(self, v: Any, ctx: CommandContext) -> Any:
        Text(64).check(v, ctx)
        if ctx.checkpoint_uuids is not None and v not in ctx.checkpoint_uuids:
            raise CommandError(
                f"no checkpoint with uuid {v!r} in this run"
                + (f" (it has {len(ctx.checkpoint_uuids)})" if ctx.checkpoint_uuids else " (it has none yet)")
            )
        return v

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "minLength": 1, "maxLength": 64}


@dataclass(frozen=True)
class InputFile(ArgType):
    """A path to a regular file the run will read (never a device, a fifo or /proc)."""

    def check(self, v: Any, ctx: CommandContext) -> Any:
        Text(4096).check(v, ctx)
        if not ctx.check_files:
            return v
        return str(check_input_file(v))

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "minLength": 1, "maxLength": 4096}


def check_input_file(path: str | os.PathLike[str], max_bytes: int = MAX_ADD_FILE_BYTES) -> Path:
    """A regular, readable file of at most ``max_bytes``; else CommandError naming the path and the problem."""
    p = Path(path)
    try:
        st = p.stat()
    except OSError as e:
        raise CommandError(f"{p}: cannot read the file ({e.strerror or e})") from None
    if not stat.S_ISREG(st.st_mode):
        raise CommandError(f"{p}: expected a regular file, not a device, folder or pipe")
    if st.st_size > max_bytes:
        raise CommandError(f"{p}: the file has {st.st_size} bytes; at most {max_bytes} are read")
    if not os.access(p, os.R_OK):
        raise CommandError(f"{p}: the file is not readable")
    return p


@dataclass(frozen=True)
class Arg:
    type: ArgType
    required: bool = False
    doc: str = ""


@dataclass(frozen=True)
class ArgSchema:
    """The arguments of one command, in declaration order."""

    args: dict[str, Arg] = field(default_factory=dict)

    def json_schema(self) -> dict[str, Any]:
        props = {}
        for k, a in self.args.items():
            s = dict(a.type.schema())
            if a.doc:
                s["description"] = a.doc
            props[k] = s
        return {
            "type": "object",
            "properties": props,
            "required": [k for k, a in self.args.items() if a.required],
            "additionalProperties": False,
        }


def _short(v: Any) -> str:
    if isinstance(v, int) and not isinstance(v, bool) and v.bit_length() > 64:
        return f"an integer of {v.bit_length()} bits"
    try:
        r = repr(v)
    except ValueError:  # e.g. an integer too long to print
        return f"a {type(v).__name__}"
    return r if len(r) <= 80 else r[:77] + "..."
