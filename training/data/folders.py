"""Image folders (``folder:PATH``): the file lists of each split and the checks on them.

Split rule: with ``PATH/train/`` and ``PATH/val/``, those are the training and test splits.
Otherwise the image files of all classes, sorted by class and then by path, are one list, and
every 10th of it (positions 9, 19, 29, ...) is the test split, the rest the training split.
Hidden files and folders (names starting with ``.``) are never classes nor images, and a
training dataset needs at least two classes. A folder without class subfolders holds
unlabelled images (accepted where labels are not needed: int8 calibration and parity
checks); the same rule splits it. No TensorFlow here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from keras_resnet.training.errors import UsageError

from keras_resnet.safefiles import special_kind

#: The image files every source reads (suffixes, compared in lower case).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
#: Every ``HOLD_OUT``-th file of a folder without split subfolders is a test image.
HOLD_OUT = 10

#: First bytes of each accepted image format, and the bytes a complete file ends with.
_SIGNATURES = ((b"\x89PNG\r\n\x1a\n", b"IEND\xaeB`\x82"), (b"\xff\xd8\xff", b"\xff\xd9"),
               (b"GIF87a", b";"), (b"GIF89a", b";"), (b"BM", b""))


@dataclass(frozen=True)
class FolderSplits:
    """The files and labels of each split (``"train"``, ``"test"``) of an image folder;
    ``classes`` is empty for unlabelled images (their labels are then -1)."""

    root: Path
    classes: list[str]
    lists: dict[str, tuple[list[str], list[int]]]


def image_file_problem(path: Path) -> str | None:
    """Why ``path`` is not a complete PNG, JPEG, GIF or BMP file, or None: an empty or
    foreign file, or one whose end marker is not within its last KiB (truncated). Damage
    inside a file is found when it is decoded."""
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(16)
            f.seek(max(0, size - 1024))
            tail = f.read(1024)
    except OSError as exc:
        return f"unreadable: {exc.strerror}"
    if not size:
        return "empty file"
    for start, end in _SIGNATURES:
        if head.startswith(start):
            if start == b"BM":
                declared = int.from_bytes(head[2:6], "little")
                return None if declared <= size else "truncated (shorter than its header says)"
            return None if end in tail else "truncated (no end marker)"
    return "not a PNG, JPEG, GIF or BMP file"


def _image_files(folder: Path) -> list[Path]:
    """The image files under ``folder``; hidden files and folders (``.thumbs/``) are left
    out, and an image name that is a FIFO, socket or device is refused."""
    found = []
    for parent, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            path = Path(parent) / name
            if name.startswith(".") or path.suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            kind = special_kind(path)
            if kind:
                raise UsageError(f"dataset file {str(path)!r} is {kind}, not a regular file; "
                                 "remove it")
            if path.is_file():
                found.append(path)
    return sorted(found)


def _files(root: Path, classes: list[str]) -> tuple[list[str], list[int]]:
    """Every image file of each class folder (or of ``root`` when there are no classes)."""
    if not classes:
        files = [str(p) for p in _image_files(root)]
        return files, [-1] * len(files)
    files, labels = [], []
    for label, cls in enumerate(classes):
        for path in _image_files(root / cls):
            files.append(str(path))
            labels.append(label)
    return files, labels


def hold_out(files: list[str], labels: list[int]) -> dict[str, tuple[list[str], list[int]]]:
    """The fixed split of one sorted list: every ``HOLD_OUT``-th file is a test file."""
    train = [i for i in range(len(files)) if i % HOLD_OUT != HOLD_OUT - 1]
    return {"train": ([files[i] for i in train], [labels[i] for i in train]),
            "test": (files[HOLD_OUT - 1::HOLD_OUT], labels[HOLD_OUT - 1::HOLD_OUT])}


def _check(splits: FolderSplits, role: str) -> None:
    """Every class has training images and every image file is complete; else UsageError."""
    root, classes, lists = splits.root, splits.classes, splits.lists
    for split, (files, _) in lists.items():
        if not files:
            raise UsageError(f"{role} folder {str(root)!r} has no {split} images "
                             f"({', '.join(IMAGE_EXTENSIONS)})")
    present = set(lists["train"][1])
    empty = [cls for label, cls in enumerate(classes) if label not in present]
    if empty:
        raise UsageError(f"{role} folder {str(root)!r}: class folder {empty[0]!r} has no "
                         f"training images{f' (and {len(empty) - 1} more)' if len(empty) > 1 else ''}"
                         "; remove it or add images")
    bad = [(f, problem) for files, _ in lists.values() for f in files
           if (problem := image_file_problem(Path(f)))]
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise UsageError(f"dataset image {bad[0][0]!r} is {bad[0][1]}{more}; fix or remove it")


def folder_splits(path: str, role: str = "dataset", labelled: bool = True) -> FolderSplits:
    """The checked splits of the image folder ``path`` (see the module docstring); a
    UsageError names ``role`` (``dataset``, ``calibration``, ``data``) when it is unusable.
    ``labelled=False`` accepts a folder of images without class subfolders."""
    root = Path(os.path.expanduser(path))
    if not root.is_dir():
        raise UsageError(f"{role} folder {root} does not exist")
    split_dirs = {"train": root / "train", "test": root / "val"}
    has_splits = split_dirs["train"].is_dir() and split_dirs["test"].is_dir()
    class_root = split_dirs["train"] if has_splits else root
    classes = sorted(p.name for p in class_root.iterdir()
                     if p.is_dir() and not p.name.startswith("."))
    if not classes and labelled:
        raise UsageError(f"{role} folder {str(root)!r} has no class subfolders")
    if len(classes) == 1 and role == "dataset":
        raise UsageError(f"{role} folder {str(root)!r} has one class folder ({classes[0]!r}); "
                         "a classifier needs at least two")
    if has_splits:
        lists = {s: _files(d, classes) for s, d in split_dirs.items()}
    else:
        lists = hold_out(*_files(root, classes))
    splits = FolderSplits(root, classes, lists)
    _check(splits, role)
    return splits
