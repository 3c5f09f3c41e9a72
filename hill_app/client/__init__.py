"""Clients of a training run: one interface whether the run is in this process or served over the network."""

from .protocol import RunClient

__all__ = ["RunClient"]
