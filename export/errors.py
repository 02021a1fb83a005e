"""Exceptions the command-line tools map to exit codes."""


class ExportError(Exception):
    """Base class of the export package's errors."""

    exit_code = 1


class UsageError(ExportError):
    """Bad input from the user (unknown model, bad option, missing file): exit code 2."""

    exit_code = 2


class VerificationFailed(ExportError):
    """An artifact failed its parity or integrity check: exit code 1."""

    exit_code = 1
