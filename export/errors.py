"""Exceptions the command-line tools map to exit codes (:mod:`keras_resnet.console`)."""

from collections.abc import Iterator
from contextlib import contextmanager

from keras_resnet.console import CommandError
from keras_resnet.console import UsageError as _ConsoleUsageError


class ExportError(CommandError):
    """Base class of the export package's errors."""

    exit_code = 1


class UsageError(ExportError, _ConsoleUsageError):
    """Bad input from the user (unknown model, bad option, missing file): exit code 2."""

    exit_code = 2


class VerificationFailed(ExportError):
    """An artifact failed its parity or integrity check: exit code 1."""

    exit_code = 1


@contextmanager
def as_export_errors() -> Iterator[None]:
    """Usage errors of the shared layers (data, input contract) as the export package's own."""
    try:
        yield
    except _ConsoleUsageError as exc:
        if isinstance(exc, UsageError):
            raise
        raise UsageError(str(exc)) from None
