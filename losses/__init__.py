"""The HILL loss and the edit -> target conversion (pure torch / numpy, no Qt, no engine)."""

from .hill_loss import TERM_NAMES, LatentTargets, LossWeights, class_stats, combine_terms, hill_loss, hill_terms
from .targets import (
    EDIT_OPS,
    STRATEGIES,
    EditError,
    TargetLayout,
    apply_edit,
    apply_edits,
    layout_from_points,
    validate_edit,
    with_metric,
)

__all__ = [
    "TERM_NAMES",
    "LatentTargets",
    "LossWeights",
    "class_stats",
    "combine_terms",
    "hill_loss",
    "hill_terms",
    "EDIT_OPS",
    "STRATEGIES",
    "EditError",
    "TargetLayout",
    "apply_edit",
    "apply_edits",
    "layout_from_points",
    "validate_edit",
    "with_metric",
]
