"""Errors the engine raises for things a user or client can act on."""


class CommandError(Exception):
    """The command cannot be applied; the message is the reason the failed status carries."""
