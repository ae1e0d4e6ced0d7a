"""Errors a user can act on: the CLI prints them as one line, never a traceback."""


class CurationError(Exception):
    """A clear, one-line problem with the input, the config or the environment."""
