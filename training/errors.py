"""The one exception type the command line turns into ``error: ...`` and exit code 2."""


class UsageError(Exception):
    """A bad input from the user (flag, dataset, TF_CONFIG, model dir): reported in one line."""
