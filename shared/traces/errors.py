"""One exception type for everything the trace tools refuse, with a message that says what to do."""

from __future__ import annotations


class TraceError(RuntimeError):
    """A trace could not be collected, parsed or loaded; the message names the cause and the fix."""


SAMPLE_HINT = (
    "the shipped sample needs neither: load it with shared.traces.load_dataset(shared.traces.SAMPLE_DIR) "
    "or `python -m shared.traces inspect shared/traces/sample`"
)
