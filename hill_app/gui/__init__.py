"""The PySide6 + pyqtgraph window. Importing it applies the PySide6 6.12.0 None-refcount guard first."""

from .latent_view import guard_none_refcount

guard_none_refcount()
