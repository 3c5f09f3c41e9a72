"""Command messages and the one declaration of every command.

A command is ``{command, args, time, uuid, status}``; status moves requested -> pending -> running ->
success | failed, and a failed command carries its reason. Each command is declared once, next to its
handler (``handlers.py``, with :func:`command`): its name, when it applies and its typed arguments.
That declaration validates commands from the window, the edits file and the control API, and is served
as JSON Schema. Only declared names exist: nothing is looked up by a name a client sends.
"""

from __future__ import annotations

import time
import uuid as _uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .argtypes import Arg, ArgSchema, ArgType, CommandContext
from .errors import CommandError

if TYPE_CHECKING:
    from .session import TrainingSession

__all__ = [
    "APPLIES",
    "Command",
    "END_OF_EPOCH",
    "CommandContext",
    "CommandError",
    "CommandSpec",
    "SPECS",
    "command",
    "describe_commands",
]

# When a command takes effect. Every command waits in the one queue and is applied by the training thread.
APPLIES = {
    "step": "at the next step boundary (also while paused); during the end-of-epoch evaluation, at once, and the "
    "evaluation is done again",
    "settings": "at the next step boundary, or between the batches of the end-of-epoch evaluation "
    "(it sets only what later steps read)",
    "epoch": "at the next epoch boundary, or at once while paused",
    "pause": "only while paused; refused while training runs",
}


END_OF_EPOCH = "end_of_epoch"  # the phase of a "settings" command applied during the end-of-epoch work


@dataclass
class Command:
    command: str
    args: dict[str, Any]
    uuid: str = field(default_factory=lambda: _uuid.uuid4().hex)
    time: float = field(default_factory=time.time)
    status: str = "requested"
    reason: str | None = None
    result: dict[str, Any] | None = None
    source: str = "user"
    step: int | None = None  # global step at which it was applied (for replay)
    epoch: int | None = None
    branch: str | None = None
    phase: str | None = None  # "end_of_epoch": applied between the batches of the end-of-epoch work

    def to_json(self) -> dict[str, Any]:
        d = {
            "command": self.command,
            "args": self.args,
            "uuid": self.uuid,
            "time": self.time,
            "status": self.status,
            "reason": self.reason,
            "result": self.result,
            "source": self.source,
            "step": self.step,
            "epoch": self.epoch,
        }
        if self.phase is not None:
            d["phase"] = self.phase
        return d


Handler = Callable[["TrainingSession", dict[str, Any]], "dict[str, Any] | None"]
Check = Callable[[dict[str, Any], CommandContext], None]


@dataclass(frozen=True)
class CommandSpec:
    name: str
    schema: ArgSchema
    applies: str  # a key of APPLIES
    doc: str
    handler: Handler
    check: Check | None = None  # cross-argument rules (e.g. 'drop' needs 'indices')
    # a step command that reads the epoch's own bookkeeping (its record, counters) waits until the end-of-epoch
    # work is done; any other step command arriving then is applied at once and the evaluation done again
    after_epoch_end: bool = False

    @property
    def boundary(self) -> str:
        """'epoch' for commands that wait for an epoch boundary (or a pause), else 'step'."""
        return "epoch" if self.applies == "epoch" else "step"

    @property
    def required(self) -> dict[str, ArgType]:
        return {k: a.type for k, a in self.schema.args.items() if a.required}

    @property
    def optional(self) -> dict[str, ArgType]:
        return {k: a.type for k, a in self.schema.args.items() if not a.required}

    def check_args(self, args: Any, ctx: CommandContext | None = None) -> dict[str, Any]:
        """Validate ``args`` (a JSON object); return the clean arguments or raise CommandError with the reason."""
        ctx = ctx or CommandContext()
        if not isinstance(args, dict):
            raise CommandError(f"{self.name}: args must be a JSON object, got {type(args).__name__}")
        fields = self.schema.args
        for k in args:
            if not isinstance(k, str) or k not in fields:
                raise CommandError(f"{self.name}: unknown argument {k!r}; allowed: {', '.join(fields) or 'none'}")
        out: dict[str, Any] = {}
        for k, a in fields.items():
            if k not in args:
                if a.required:
                    raise CommandError(f"{self.name}: missing argument {k!r}")
                continue
            try:
                out[k] = a.type.check(args[k], ctx)
            except CommandError as e:
                raise CommandError(f"{self.name}: argument {k!r}: {e}") from None
        if self.check is not None:
            try:
                self.check(out, ctx)
            except CommandError as e:
                raise CommandError(f"{self.name}: {e}") from None
        return out

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "applies": self.applies,
            "applies_doc": APPLIES[self.applies],
            "doc": self.doc,
            "args_schema": self.schema.json_schema(),
        }


SPECS: dict[str, CommandSpec] = {}


def command(
    name: str,
    *,
    applies: str = "step",
    doc: str,
    check: Check | None = None,
    after_epoch_end: bool = False,
    **args: Arg,
) -> Callable[[Handler], Handler]:
    """Declare a command next to its handler: ``@command("set_alpha", doc=..., alpha=Arg(Number(0, 1), True))``."""
    if applies not in APPLIES:
        raise ValueError(f"applies must be one of {', '.join(APPLIES)}")

    def register(fn: Handler) -> Handler:
        if name in SPECS:
            raise ValueError(f"command {name!r} declared twice")
        SPECS[name] = CommandSpec(name, ArgSchema(dict(args)), applies, doc, fn, check, after_epoch_end)
        return fn

    return register


def describe_commands() -> list[dict[str, Any]]:
    """Every command with its JSON Schema, for the API, the README and the window."""
    return [SPECS[n].describe() for n in SPECS]


def commands_markdown() -> str:
    """The README's command table, generated from the declaration (tests check the README against it)."""
    rows = ["| command | applies | arguments | what it does |", "|---|---|---|---|"]
    for spec in SPECS.values():
        args = ", ".join(f"`{k}`" + ("" if a.required else "?") for k, a in spec.schema.args.items()) or "none"
        rows.append(f"| `{spec.name}` | {spec.applies} | {args} | {spec.doc} |")
    return "\n".join(rows)


from . import handlers as _handlers  # noqa: E402,F401  (the declarations live next to their handlers)
