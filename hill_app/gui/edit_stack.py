"""The edits a user makes at one pause, with undo and redo; Qt-free so it is testable on its own.

The stack holds the edit ops of :mod:`hill_app.losses.targets` (``move_center``, ``scale_spread``,
``move_points``, ``merge``, ``separate``; ``strategy`` is accepted too) over a *base* layout: the layout
as the model stands at the pause (``layout_from_points``). What the user sees, and what a commit would
send to the session, is ``apply_edits(base, edits)``. Undo history is a list of whole edit lists (they are
small), so clearing or rewriting the edits is one undoable step like any push.
"""

from __future__ import annotations

import copy
from typing import Any

from hill_app.losses import TargetLayout, apply_edit, apply_edits, validate_edit


def _jsonable(v: Any) -> Any:
    """Tuples -> lists, so an edit compares equal to its JSON round trip (journal, replay)."""
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    return v


class EditStack:
    """Edit ops made at the current pause, over a base layout; every change is one undoable step."""

    def __init__(self, base: TargetLayout | None = None, view_size: int = 0, max_history: int = 500) -> None:
        self._base: TargetLayout | None = base.copy() if base is not None else None
        self._view_size = int(view_size)
        self._edits: list[dict] = []
        self._undo: list[list[dict]] = []
        self._redo: list[list[dict]] = []
        self._max_history = max_history
        self._cache: TargetLayout | None = None
        self._cache_for: list[dict] | None = None  # the edits list object the cache was built from

    # ------------------------------------------------------------------ base

    @property
    def base(self) -> TargetLayout | None:
        """The layout as the model stands at this pause (a copy; edits never change it)."""
        return None if self._base is None else self._base.copy()

    @property
    def view_size(self) -> int:
        return self._view_size

    def reset_base(self, layout: TargetLayout, view_size: int | None = None, keep_edits: bool = False) -> None:
        """A new pause or epoch: edits now apply to ``layout``. Without ``keep_edits`` they and the history go.

        Kept edits that no longer validate (fewer classes or view points) are dropped, not kept broken.
        """
        self._base = layout.copy()
        if view_size is not None:
            self._view_size = int(view_size)
        if keep_edits:
            self._edits = [e for e in self._edits if self._valid(e)]
            self._undo = [[e for e in lst if self._valid(e)] for lst in self._undo]
            self._redo = [[e for e in lst if self._valid(e)] for lst in self._redo]
        else:
            self._edits, self._undo, self._redo = [], [], []
        self._invalidate()

    def _valid(self, edit: dict) -> bool:
        try:
            self.validate(edit)
        except ValueError:
            return False
        return True

    def validate(self, edit: dict) -> dict:
        """The edit normalised by ``validate_edit`` against this base (``EditError`` if malformed)."""
        if self._base is None:
            raise ValueError("no base layout yet: edits apply to a snapshot, and none has been shown")
        return _jsonable(validate_edit(edit, self._base.num_classes, self._view_size))

    # ------------------------------------------------------------------ changes

    def _record(self, new_edits: list[dict]) -> None:
        self._undo.append(self._edits)
        if len(self._undo) > self._max_history:
            del self._undo[0]
        self._redo.clear()
        self._edits = new_edits

    def push(self, edit: dict) -> dict:
        """Validate and append one edit; clears redo. Returns the normalised edit as stored."""
        e = self.validate(edit)
        old = self._edits
        self._record(old + [e])
        # Incremental layout: the common case (drag -> push) costs one apply_edit, not a replay of all.
        if self._cache is not None and self._cache_for is old:
            self._cache = apply_edit(self._cache, e)
            self._cache_for = self._edits
        return copy.deepcopy(e)

    def push_many(self, edits: list[dict]) -> list[dict]:
        """Validate and append several edits as ONE undoable step (a drop that merges two classes and places
        them where it was dropped is one gesture). Nothing changes if any of them is invalid."""
        if not edits:
            return []
        new = [self.validate(e) for e in edits]
        old = self._edits
        self._record(old + new)
        if self._cache is not None and self._cache_for is old:
            for e in new:
                self._cache = apply_edit(self._cache, e)
            self._cache_for = self._edits
        return copy.deepcopy(new)

    def replace(self, edits: list[dict]) -> None:
        """Swap the whole edit list (e.g. "reset this class" drops the edits naming it); one undoable step."""
        new = [self.validate(e) for e in edits]
        self._record(new)
        self._invalidate()

    def clear(self) -> None:
        """Drop every edit; undoable (a no-op, and no history entry, when there are none)."""
        if not self._edits:
            return
        self._record([])
        self._invalidate()

    def undo(self) -> bool:
        """Go back one step; False when there is nothing to undo."""
        if not self._undo:
            return False
        self._redo.append(self._edits)
        self._edits = self._undo.pop()
        self._invalidate()
        return True

    def redo(self) -> bool:
        """Re-apply the last undone step; False when there is nothing to redo."""
        if not self._redo:
            return False
        self._undo.append(self._edits)
        self._edits = self._redo.pop()
        self._invalidate()
        return True

    def can_undo(self) -> bool:
        return bool(self._undo)

    def can_redo(self) -> bool:
        return bool(self._redo)

    # ------------------------------------------------------------------ reading

    @property
    def edits(self) -> list[dict]:
        """A copy of the current edits, in order (safe to send to the session or to JSON)."""
        return copy.deepcopy(self._edits)

    def __len__(self) -> int:
        return len(self._edits)

    @property
    def layout(self) -> TargetLayout:
        """``apply_edits(base, edits)``, cached until the edits change. Do not mutate the result."""
        if self._base is None:
            raise ValueError("no base layout yet")
        if self._cache is None or self._cache_for is not self._edits:
            self._cache = apply_edits(self._base, self._edits)
            self._cache_for = self._edits
        return self._cache

    def _invalidate(self) -> None:
        self._cache = None
        self._cache_for = None
