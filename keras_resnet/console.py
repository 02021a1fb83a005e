"""Console-script plumbing shared by ``keras-resnet-models``, the trainer and the exporter
(pure Python: importing it loads neither Keras nor TensorFlow)."""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NoReturn


@contextmanager
def native_stderr_silenced(unless_loaded: str | None = None) -> Iterator[None]:
    """File descriptor 2 to /dev/null for the block: TensorFlow 2.21 writes start-up lines
    through absl before ``TF_CPP_MIN_LOG_LEVEL`` applies, which would bury a one-line
    ``error:``. Nothing is silenced with ``KERAS_RESNET_VERBOSE=1``, nor when the module
    ``unless_loaded`` is already imported (its start-up lines are past)."""
    if os.environ.get("KERAS_RESNET_VERBOSE") or (unless_loaded and unless_loaded in sys.modules):
        yield
        return
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class CommandError(Exception):
    """An error a console script reports as one ``error: ...`` line with ``exit_code``."""

    exit_code = 1


class UsageError(CommandError):
    """Bad input from the user (flag, file, dataset, environment): exit code 2."""

    exit_code = 2


class Parser(argparse.ArgumentParser):
    """argparse that raises :class:`UsageError` (one line, exit 2) instead of printing usage."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def require_extra(command: str, extra: str, *modules: str) -> None:
    """Raise :class:`UsageError` naming the pip extra when a module it installs is missing
    (the base install is the zoo alone)."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise UsageError(f"{command} needs {', '.join(missing)}: "
                         f"pip install 'keras-resnet[{extra}]'")


def run_command(body: Callable[[], int]) -> int:
    """Run a console script's body: a :class:`CommandError` becomes one ``error:`` line and
    its exit code, Ctrl-C exit 130, anything else one line and exit 1 (the traceback only
    with ``KERAS_RESNET_VERBOSE=1``)."""
    try:
        return body()
    except CommandError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted; no partial output was kept", file=sys.stderr)
        return 130
    except Exception as exc:
        if os.environ.get("KERAS_RESNET_VERBOSE"):
            raise
        text = str(exc).strip().splitlines()
        print(f"error: {type(exc).__name__}: {text[0][:300] if text else ''} (an unexpected "
              "failure; KERAS_RESNET_VERBOSE=1 shows the traceback)", file=sys.stderr)
        return 1


def text_table(header: Sequence[str], rows: Iterable[Sequence[Any]], *,
               markdown: bool = False, rule: bool = True) -> str:
    """Rows as aligned text columns (a dashed rule under the header) or as Markdown."""
    body = [[str(c) for c in row] for row in rows]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in body])
    widths = [max(len(c) for c in col) for col in zip(header, *body, strict=True)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
             for row in (list(header), *body)]
    if rule:
        lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
