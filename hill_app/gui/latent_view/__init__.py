"""The latent view: the view set's 2D points, class handles and spread rings, and the edits made on them.

``view`` is the Qt widget, ``interaction`` the Qt-free hit-testing and drag logic, ``scatter`` the
pyqtgraph fast path for the points, ``overlays`` the handles, rings, arrows, targets and legend.
"""

from ..compat import guard_none_refcount
from .interaction import DRAG_START, HANDLE_HIT, HANDLE_SIZE, MERGE_SNAP, POINT_HIT, RING_HIT
from .view import AXIS_LABELS, HOVER_MS, LatentView, SampleRenderer

__all__ = [
    "AXIS_LABELS",
    "DRAG_START",
    "HANDLE_HIT",
    "HANDLE_SIZE",
    "HOVER_MS",
    "MERGE_SNAP",
    "POINT_HIT",
    "RING_HIT",
    "LatentView",
    "SampleRenderer",
    "guard_none_refcount",
]
