"""One exception type for everything the trace tools refuse, with a message that says what to do."""

from __future__ import annotations


class TraceError(RuntimeError):
    """A trace could not be collected, parsed or loaded; the message names the cause and the fix."""


class OptionError(TraceError, ValueError):
    """An option out of its valid range, refused before anything touches tracefs or starts a server.
    A ValueError for API callers, a TraceError for the CLI's one-line error path."""

    def __init__(self, option: str, value: object, valid: str, problem: str = "is out of range"):
        self.option, self.value, self.valid, self.problem = option, value, valid, problem
        super().__init__(f"{option}: {value!r} {problem}; valid: {valid}")


class ManifestError(TraceError):
    """A dataset manifest that is missing or lacks a key, or holds one of the wrong type."""


SAMPLE_HINT = (
    "the shipped sample needs neither: load it with shared.traces.load_dataset(shared.traces.SAMPLE_DIR) "
    "or `python -m shared.traces inspect shared/traces/sample`"
)
