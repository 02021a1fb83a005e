"""DIR/manifest.json: reading, writing, hashing and tool versions."""

from __future__ import annotations

import hashlib
import json
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from .errors import UsageError

MANIFEST_NAME = "manifest.json"
SCHEMA_VERSION = 1
FORMATS = ("saved_model", "tflite", "onnx")
PRECISIONS = ("float32", "float16", "dynamic_int8", "int8")

_TOOLS = ("tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime", "ai-edge-litert", "numpy",
          "keras-resnet")


def sha256_path(path: Path) -> str:
    """SHA-256 of a file, or of a directory as the hash of its sorted (path, file hash) list."""
    path = Path(path)
    if path.is_file():
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        return digest.hexdigest()
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


def write_manifest(directory: Path, manifest: dict[str, Any]) -> Path:
    """Write ``manifest.json`` into ``directory``."""
    path = Path(directory) / MANIFEST_NAME
    path.write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    return path


def read_manifest(directory: Path) -> dict[str, Any]:
    """Read and sanity-check ``DIR/manifest.json``; a missing or broken one is a UsageError."""
    path = Path(directory) / MANIFEST_NAME
    if not Path(directory).is_dir():
        raise UsageError(f"{directory} is not a directory")
    if not path.is_file():
        raise UsageError(f"{path} not found: not an export directory")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path} is not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("artifacts"), list):
        raise UsageError(f"{path} has no 'artifacts' list")
    return manifest
