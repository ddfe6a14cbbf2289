"""How reading a dataset fails: one exception family, each message saying what was wrong and what is valid.

Reproduce scripts catch DataError and print it as one line on stderr (exit status 2), no traceback.
"""


class DataError(Exception):
    """A dataset that cannot be used as given: missing, or not what its format promises."""


class DatasetNotFoundError(DataError, FileNotFoundError):
    """The files are not where we looked; the message says how to get them."""


class CorruptDataError(DataError, ValueError):
    """The file exists but is not what its format promises (truncated, damaged, labels out of range,
    counts that do not match); the message names the file, the fault and what is valid."""
