"""Bounded work on files a user hands over: only regular files are opened (a FIFO would block
a reader forever, a device never ends), a ``.keras`` archive is measured before it is
unpacked (a small file can inflate to gigabytes: a "zip bomb"), and JSON is nested no deeper
than a bound. Pure Python: importing it loads neither Keras nor TensorFlow."""

from __future__ import annotations

import json
import os
import re
import stat
import zipfile
from typing import Any

#: A ``.keras`` archive may inflate to at most this many times its own size, or this many
#: bytes, whichever is larger. Weights barely compress (about 1.1x), a model's JSON config
#: about 10-20x, so real files stay far below both bounds.
MAX_INFLATION_RATIO = 20
MIN_INFLATION_CAP = 64 * 2**20
#: Deepest JSON nesting accepted (a Keras config of ResNet-1202 nests about 12 levels).
MAX_JSON_DEPTH = 64
#: Deepest nesting of a ``.keras`` file's config.json (models nested in models go deeper).
MAX_CONFIG_DEPTH = 200

_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


class RefusedFile(ValueError):
    """A file that is refused before it is read: not a regular file, an archive that would
    inflate beyond its bound, or JSON nested too deeply."""


def special_kind(path: str | os.PathLike) -> str | None:
    """``"a FIFO (named pipe)"``, ``"a socket"``, ... when ``path`` (links followed) exists
    and is neither a regular file nor a directory; else None."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    return next((name for test, name in _KINDS if test(mode)), None)


def check_regular(path: str | os.PathLike, what: str) -> None:
    """RefusedFile naming ``what`` when ``path`` is a FIFO, socket or device."""
    kind = special_kind(path)
    if kind:
        raise RefusedFile(f"{what} {os.fspath(path)} is {kind}, not a regular file; refused")


def check_archive(path: str | os.PathLike) -> None:
    """Refuse a zip archive (``.keras``) whose members would inflate beyond
    ``max(MAX_INFLATION_RATIO x its size, MIN_INFLATION_CAP)``, before anything is unpacked;
    the sizes come from the archive's directory, and a member that lies about its size fails
    its CRC check when Keras reads it."""
    check_regular(path, "model file")
    size = os.path.getsize(path)
    cap = max(MAX_INFLATION_RATIO * size, MIN_INFLATION_CAP)
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise RefusedFile(f"{os.fspath(path)} is not a readable .keras (zip) archive "
                          f"({exc})") from None
    total = sum(m.file_size for m in members)
    if total > cap:
        raise RefusedFile(f"{os.fspath(path)} would inflate from {size} bytes to {total} "
                          f"(more than {cap}: {MAX_INFLATION_RATIO}x its size or "
                          f"{MIN_INFLATION_CAP >> 20} MiB); refused before unpacking")
    config = next((m for m in members if m.filename == "config.json"), None)
    if config is not None:
        with zipfile.ZipFile(path) as archive:
            text = archive.read(config).decode("utf-8", "replace")
        if json_depth(text) > MAX_CONFIG_DEPTH:
            raise RefusedFile(f"{os.fspath(path)}: its config is nested more than "
                              f"{MAX_CONFIG_DEPTH} levels deep; refused")


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACKETS = re.compile(r"[\[\]{}]")


def json_depth(text: str) -> int:
    """The deepest nesting of ``[`` and ``{`` in JSON text (strings skipped), iteratively."""
    depth = deepest = 0
    for match in _BRACKETS.finditer(_STRING.sub("", text)):
        depth += 1 if match.group() in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


def loads_bounded(text: str, what: str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` of text nested at most ``max_depth`` deep; RefusedFile otherwise
    (never a RecursionError). Raises ``json.JSONDecodeError`` for invalid JSON."""
    if json_depth(text) > max_depth:
        raise RefusedFile(f"{what} is nested more than {max_depth} levels deep; refused")
    return json.loads(text)


#: Largest labels file read (ImageNet-21k's names take about 1 MiB).
MAX_LABELS_BYTES = 16 * 2**20


def read_json_file(path: str | os.PathLike, what: str, max_bytes: int) -> Any:
    """A regular UTF-8 JSON file of at most ``max_bytes``, nested at most
    ``MAX_JSON_DEPTH`` deep; RefusedFile with one line otherwise."""
    check_regular(path, what)
    try:
        if os.path.getsize(path) > max_bytes:
            raise RefusedFile(f"{what} {os.fspath(path)} is larger than {max_bytes} bytes")
        with open(path, "rb") as f:
            text = f.read().decode("utf-8")
        return loads_bounded(text, f"{what} {os.fspath(path)}")
    except OSError as exc:
        raise RefusedFile(f"cannot read {what} {os.fspath(path)}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise RefusedFile(f"{what} {os.fspath(path)} is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise RefusedFile(f"{what} {os.fspath(path)} is not valid JSON ({exc.msg})") from None


def labels_from_json(data: Any, path: str | os.PathLike) -> list[str]:
    """The class names of a labels file's JSON: a list of strings, or an object whose
    ``labels`` is one; RefusedFile naming what is wrong otherwise."""
    labels = data.get("labels") if isinstance(data, dict) else data
    if not isinstance(labels, list):
        raise RefusedFile(f"labels file {os.fspath(path)} holds no list of labels (expected a "
                          'JSON list of strings or {"labels": [...]})')
    wrong = next((x for x in labels if not isinstance(x, str)), None)
    if wrong is not None or not labels:
        raise RefusedFile(f"labels file {os.fspath(path)}: every label must be a string "
                          f"(found {wrong!r})" if labels else
                          f"labels file {os.fspath(path)} holds an empty list of labels")
    return labels
