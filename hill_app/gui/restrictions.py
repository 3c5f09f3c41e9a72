"""What a window may offer: every command and panel (the default), or what a study protocol allows.

The main window is given one :class:`Restrictions`; it hides the panels that are not allowed, refuses a
command or an edit op that is not allowed with the reason (and tells its ``refused`` listeners), and keeps
New run / Open run / Attach away when ``new_runs`` is off. The study window composes a main window with the
restrictions of its protocol instead of overriding the window's methods.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# The panels a window can show, named as the study protocols name them (studies/protocol.py PANELS).
PANELS = ("latent", "projection", "loss", "optimizer", "grad_clip", "checkpoints", "data", "layers", "evaluate", "stop")


@dataclass(frozen=True)
class Restrictions:
    """``None`` allows everything of that kind."""

    panels: frozenset[str] | None = None
    check_command: Callable[[str], str | None] | None = None  # None if allowed, else the reason
    check_edit: Callable[[dict[str, Any]], str | None] | None = None
    new_runs: bool = True  # New run, Open run, Attach, Start
    name: str = ""  # "study protocol NAME", for the log
    where: str = "here"  # "not allowed {where}: {reason}"
    suggestions: bool = True  # "Suggest edits" and the strategy edits (off
    #                                                            in studies: they would change what is measured
    #                                                            of the participant)

    def shows(self, panel: str) -> bool:
        return self.panels is None or panel in self.panels

    def command_refusal(self, command: str) -> str | None:
        return None if self.check_command is None else self.check_command(command)

    def edit_refusal(self, edit: dict[str, Any]) -> str | None:
        return None if self.check_edit is None else self.check_edit(edit)

    @classmethod
    def from_protocol(cls, protocol: Any) -> Restrictions:
        """A study protocol's panels, commands and edit ops (``hill_app.studies.protocol.Protocol``)."""
        return cls(
            panels=frozenset(protocol.panels),
            check_command=protocol.check_command,
            check_edit=protocol.check_edit,
            new_runs=False,
            name=f"study protocol {protocol.name}",
            where="in this study",
            suggestions=False,
        )


UNRESTRICTED = Restrictions()
