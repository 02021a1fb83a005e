"""DIR/manifest.json: reading and checking it, hashing, tool versions."""

from __future__ import annotations

import hashlib
import json
import os
import platform
from importlib import metadata
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from keras_resnet.export.errors import UsageError

from keras_resnet.safefiles import RefusedFile, loads_bounded, special_kind
from keras_resnet.weights.hub import sha256_of

MANIFEST_NAME = "manifest.json"
SCHEMA_VERSION = 1
#: Bounds on a manifest read back (this exporter writes a few KiB, a dozen entries).
MAX_MANIFEST_BYTES = 4 * 2**20
MAX_MANIFEST_DEPTH = 32
MAX_ENTRIES = 256

_TOOLS = ("tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime", "ai-edge-litert", "openvino",
          "numpy", "keras-resnet")


def sha256_path(path: Path) -> str:
    """SHA-256 of a file, or of a directory as the hash of its sorted (path, file hash) list."""
    path = Path(path)
    if path.is_file():
        return sha256_of(str(path))
    if path.is_dir():
        lines = [f"{p.relative_to(path).as_posix()}\0{sha256_path(p)}\n"
                 for p in sorted(path.rglob("*")) if p.is_file()]
        return hashlib.sha256("".join(lines).encode()).hexdigest()
    raise FileNotFoundError(path)


def size_bytes(path: Path) -> int:
    """Size of a file, or the total size of the files under a directory."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def tool_versions() -> dict[str, str]:
    """Installed versions of the tools that produced or run the artifacts."""
    versions = {"python": platform.python_version()}
    for tool in _TOOLS:
        try:
            versions[tool] = metadata.version(tool)
        except metadata.PackageNotFoundError:
            versions[tool] = "not installed"
    return versions


def read_manifest(directory: Path) -> dict[str, Any]:
    """Read and check ``DIR/manifest.json``: its structure, and that every path it names is
    relative and stays inside DIR (no absolute path, no ``..``). A missing or broken
    manifest is a UsageError naming the entry; nothing it names has been opened yet."""
    directory = Path(directory)
    path = directory / MANIFEST_NAME
    if not directory.is_dir():
        raise UsageError(f"{directory} is not a directory")
    if path.is_symlink():
        raise UsageError(f"{path} is a symbolic link; an export directory holds its own "
                         "manifest")
    manifest = _load_bounded(path)
    if not isinstance(manifest, dict) or not isinstance(manifest.get("artifacts"), list):
        raise UsageError(f"{path} has no 'artifacts' list")
    _check_counts(path, manifest)
    for index, artifact in enumerate(manifest["artifacts"]):
        _check_entry(path, f"artifacts[{index}]", artifact, ("format", "precision"))
    reference = manifest.get("reference", {})
    if not isinstance(reference, dict):
        raise UsageError(f"{path}: 'reference' is not an object")
    for name, entry in reference.items():
        _check_entry(path, f"reference.{name}", entry, ())
    shape = manifest.get("input", {}).get("shape") if isinstance(manifest.get("input"),
                                                                   dict) else None
    if not (isinstance(shape, list) and len(shape) == 4
            and all(isinstance(d, int) and 0 < d <= 8192 for d in shape[1:])):
        raise UsageError(f"{path}: 'input.shape' is not [null, H, W, C] with positive sizes")
    return manifest


def _load_bounded(path: Path) -> Any:
    """The manifest's JSON: a regular file of at most ``MAX_MANIFEST_BYTES``, nested at most
    ``MAX_MANIFEST_DEPTH`` deep; else UsageError."""
    kind = special_kind(path)
    if kind:
        raise UsageError(f"{path} is {kind}, not a regular file; refused")
    if not path.is_file():
        raise UsageError(f"{path} not found: not an export directory")
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise UsageError(f"{path} is larger than {MAX_MANIFEST_BYTES >> 20} MiB; not a "
                         "manifest this exporter writes")
    try:
        return loads_bounded(path.read_text(encoding="utf-8"), str(path), MAX_MANIFEST_DEPTH)
    except RefusedFile as exc:
        raise UsageError(str(exc)) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path} is not valid JSON ({exc})") from None


def _check_counts(path: Path, manifest: dict[str, Any]) -> None:
    """At most ``MAX_ENTRIES`` artifacts and reference files, no path named twice."""
    reference = manifest.get("reference", {})
    count = len(manifest["artifacts"]) + (len(reference) if isinstance(reference, dict) else 0)
    if count > MAX_ENTRIES:
        raise UsageError(f"{path} lists {count} files, more than {MAX_ENTRIES}; not a "
                         "manifest this exporter writes")
    entries = [*manifest["artifacts"], *(reference.values() if isinstance(reference, dict)
                                         else ())]
    seen: set[str] = set()
    for entry in entries:
        rel = entry.get("path") if isinstance(entry, dict) else None
        if isinstance(rel, str):
            key = str(PurePosixPath(rel))
            if key in seen:
                raise UsageError(f"{path}: the file {rel!r} is listed twice; refused")
            seen.add(key)


def _check_entry(manifest_path: Path, where: str, entry: Any, fields: tuple[str, ...]) -> None:
    """One artifact or reference entry: the string fields it needs and a safe path."""
    if not isinstance(entry, dict):
        raise UsageError(f"{manifest_path}: {where} is not an object")
    for name in ("path", "sha256", *fields):
        if not isinstance(entry.get(name), str) or not entry[name]:
            raise UsageError(f"{manifest_path}: {where} has no {name!r} string")
    problem = unsafe_relative_path(entry["path"])
    if problem:
        raise UsageError(f"{manifest_path}: {where} path {entry['path']!r} {problem}; every "
                         "path must name a file inside the export directory")


def unsafe_relative_path(rel: str) -> str | None:
    """Why ``rel`` cannot name a file inside an export directory, or None when it can."""
    pure = PurePosixPath(rel)
    if "\0" in rel or "\\" in rel:
        return "contains a NUL or backslash"
    if pure.is_absolute() or PureWindowsPath(rel).drive:
        return "is absolute"
    if ".." in pure.parts:
        return "contains '..'"
    if pure.parts in ((), (".",)):
        return "names the directory itself"
    return None


def resolve_inside(directory: Path, rel: str) -> Path:
    """``directory / rel`` after checking that it, and every file under it, stays inside
    ``directory`` once symbolic links are followed; raises UsageError naming ``rel``."""
    problem = unsafe_relative_path(rel)
    if problem:
        raise UsageError(f"manifest path {rel!r} {problem}")
    root = Path(directory).resolve()
    path = Path(directory) / rel
    escape = _escaping_link(root, path)
    if escape is not None:
        raise UsageError(f"manifest path {rel!r}: {escape} leads outside the export "
                         "directory (symbolic link); not read")
    special = _special_file(path)
    if special is not None:
        raise UsageError(f"manifest path {rel!r}: {special[0]} is {special[1]}, not a regular "
                         "file; not read")
    return path


def _special_file(path: Path) -> tuple[str, str] | None:
    """The first FIFO, socket or device at or under ``path``, with its kind."""
    kind = special_kind(path)
    if kind:
        return str(path), kind
    if path.is_dir():
        for folder, _, files in os.walk(path):
            for name in files:
                kind = special_kind(os.path.join(folder, name))
                if kind:
                    return os.path.join(folder, name), kind
    return None


def _escaping_link(root: Path, path: Path) -> str | None:
    """The first part of ``path`` (or, for a directory, anything under it) whose real
    location is outside ``root``; None when everything stays inside."""
    if not _inside(root, path):
        return str(path)
    if path.is_dir() and not path.is_symlink():
        for folder, dirs, files in os.walk(path):
            for name in (*dirs, *files):
                if not _inside(root, Path(folder) / name):
                    return str(Path(folder) / name)
    return None


def _inside(root: Path, path: Path) -> bool:
    try:
        return Path(os.path.realpath(path)).is_relative_to(root)
    except (OSError, ValueError):
        return False
