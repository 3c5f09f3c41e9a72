"""The class colours moved to :mod:`hill_app.palette` (Qt-free, shared with the study report's figures, so
studies never imports the window); the window's modules still import them from here."""

from hill_app.palette import OKABE_ITO, OKABE_ITO_BLACK, PALETTE, TOL_MUTED, class_colors, darker, luminance

__all__ = ["OKABE_ITO", "OKABE_ITO_BLACK", "PALETTE", "TOL_MUTED", "class_colors", "darker", "luminance"]
