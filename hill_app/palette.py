"""Colour-blind-safe class colours: Okabe-Ito first, then Paul Tol's "muted" set.

Okabe & Ito (2008) is the usual CB-safe qualitative palette but has only 8 colours (one is black, which we
keep for outlines and text and put last); Tol's muted scheme (https://personal.sron.nl/~pault/) adds
colours that stay distinct from those for deuteranopes and protanopes, so data sets with 10 (digits,
CIFAR-10) or 12 (PAMAP2) classes still get distinct, named-in-the-legend colours. Qt-free on purpose:
plain ``(r, g, b)`` tuples work with ``QColor(*rgb)`` and ``pg.mkColor``, and both the window and the study
report's figures (hill_app.studies.figures) draw with them.
"""

from __future__ import annotations

OKABE_ITO: tuple[tuple[int, int, int], ...] = (
    (0xE6, 0x9F, 0x00),  # orange
    (0x56, 0xB4, 0xE9),  # sky blue
    (0x00, 0x9E, 0x73),  # bluish green
    (0xF0, 0xE4, 0x42),  # yellow
    (0x00, 0x72, 0xB2),  # blue
    (0xD5, 0x5E, 0x00),  # vermillion
    (0xCC, 0x79, 0xA7),  # reddish purple
)
OKABE_ITO_BLACK = (0x00, 0x00, 0x00)

# Tol "muted", ordered so the first ones picked are the most distinct from Okabe-Ito above.
TOL_MUTED: tuple[tuple[int, int, int], ...] = (
    (0x33, 0x22, 0x88),  # indigo
    (0x99, 0x99, 0x33),  # olive
    (0x88, 0x22, 0x55),  # wine
    (0x44, 0xAA, 0x99),  # teal
    (0xCC, 0x66, 0x77),  # rose
    (0x88, 0xCC, 0xEE),  # cyan
    (0xDD, 0xCC, 0x77),  # sand
    (0xAA, 0x44, 0x99),  # purple
    (0x11, 0x77, 0x33),  # green
)

# 7 Okabe-Ito + 9 Tol muted + a dark grey standing in for Okabe-Ito black (pure black would vanish
# behind the black outlines used for "misclassified" and selection): 17 distinct colours.
PALETTE: tuple[tuple[int, int, int], ...] = OKABE_ITO + TOL_MUTED[:4] + ((0x44, 0x44, 0x44),) + TOL_MUTED[4:]


def class_colors(k: int) -> list[tuple[int, int, int]]:
    """``k`` class colours, distinct for k <= 17; beyond that the palette repeats, lightened per round."""
    if k < 0:
        raise ValueError(f"class_colors: k must be >= 0, got {k}")
    out = []
    n = len(PALETTE)
    for i in range(k):
        r, g, b = PALETTE[i % n]
        t = min(0.6, 0.25 * (i // n))  # later rounds mix toward white so repeats stay tellable apart
        out.append((round(r + (255 - r) * t), round(g + (255 - g) * t), round(b + (255 - b) * t)))
    return out


def darker(rgb: tuple[int, int, int], factor: float = 0.65) -> tuple[int, int, int]:
    """A darker shade of ``rgb`` (outlines of light colours such as yellow on a white background)."""
    return tuple(max(0, min(255, round(c * factor))) for c in rgb)  # type: ignore[return-value]


def luminance(rgb: tuple[int, int, int]) -> float:
    """Relative luminance (WCAG), to pick dark or light text on a class colour."""

    def lin(c: int) -> float:
        s = c / 255.0
        return s / 12.92 if s <= 0.03928 else ((s + 0.055) / 1.055) ** 2.4

    r, g, b = rgb
    return 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b)
