"""Errors a caller can cause. Each message says what went wrong and what to do next.

Entrypoints turn these into their own shape (an MCP ``ToolError``, a CLI exit code 1 with the
message on stderr); anything else that escapes a service is a bug or an infrastructure failure.
"""


class JetpackError(Exception):
    """A failure caused by the caller's input or by the current state of the data."""


class NotFound(JetpackError):
    """The named task, agent or other object does not exist."""


class InvalidInput(JetpackError):
    """The request is malformed or breaks a documented limit."""


class Conflict(JetpackError):
    """The request is valid but the current state does not allow it (try something else)."""


class NotPermitted(JetpackError):
    """The caller may not act on this object (e.g. completing another agent's claim)."""


class ConfigError(JetpackError):
    """The configuration file or environment holds an invalid value."""
