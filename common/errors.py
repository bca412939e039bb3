"""Typed user-facing errors.

Library code raises these with a message that says what is wrong, where, and how to fix it. The CLI
turns them into one red line on stderr and a non-zero exit. Any other exception is a bug and keeps
its traceback.
"""


class MlxError(Exception):
    """Base class for every error caused by user input or the environment, not by a bug."""

    exit_code = 1


class ConfigError(MlxError):
    """An option or combination of options is invalid."""

    exit_code = 2


class DataError(MlxError):
    """A dataset is missing, unreadable or malformed."""


class ModelLoadError(MlxError):
    """A model could not be found or loaded."""


class StoreError(MlxError):
    """An artifact store (HDF5 file, run folder) is missing, foreign, incomplete or locked."""
