"""The two ways reading a dataset fails, each with a message that says what to do."""


class DatasetNotFoundError(FileNotFoundError):
    """The files are not where we looked; the message says how to get them."""


class CorruptDataError(ValueError):
    """The file exists but is not what its format promises; the message names file and fault."""
