"""Errors polytask raises for bad input.

Every problem with the user's config, files or data becomes a :class:`ConfigError`
whose message is one line naming the field, file or value and what was expected.
The CLI prints that line and exits with code 2; the Python API lets it propagate.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """Bad input: a config field, data file or value that polytask cannot use.

    The message is one line: text quoted from elsewhere (a parser's error) that spans
    lines is joined into one.
    """

    def __init__(self, message: object = "", *args: object):
        text = str(message)
        super().__init__(" ".join(text.split()) if "\n" in text or "\r" in text else text, *args)


class DivergedError(RuntimeError):
    """Training produced a non-finite loss."""


class StorageError(ConfigError):
    """A file cannot be written (a full disk, a read-only folder): one line naming it."""


def storage_error(path: object, e: OSError) -> StorageError:
    """The one line for an ``OSError`` raised while writing ``path``."""
    return StorageError(f"cannot write '{path}': {e.strerror or e}; free space or choose a writable folder (what is already stored is kept)")


class TimeBudgetError(RuntimeError):
    """A run took longer than its time budget (``train.max_minutes``)."""


class WorkerDiedError(RuntimeError):
    """A worker process of a study ended while running its jobs (killed by the system, or a crash)."""


class UndefinedMetricError(RuntimeError):
    """A task's validation metric was undefined at every epoch, so no epoch could be chosen."""


class PolytaskWarning(UserWarning):
    """Something about the input worth knowing that does not stop a study: a guessed task
    kind, a metric that misleads on these labels, results mixing library versions."""
