"""Test order for ``pytest -n 2 --dist loadfile``: the long files first.

pytest-xdist hands each file to one worker, by default the files with the most tests first;
the long files here hold one or two tests (a training run, a full export), so they came last
and one worker ran them while the other sat idle. Files marked ``slow`` (``pytestmark`` or a
test's mark) now go first, the longest first (``@pytest.mark.slow(seconds=...)``: about the
seconds the file takes on one core of a 2-core AVX2 EPYC; only the order they give matters),
and the rest follow in collection order, so the short files fill in around the long ones.
"""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config.option, "loadscopereorder"):  # pytest-xdist: keep the order below
        config.option.loadscopereorder = False


def _file_cost(items: list[pytest.Item]) -> float:
    """The file's stated seconds (its largest ``slow`` mark), 0 for a file with none."""
    marks = [mark for item in items for mark in item.iter_markers("slow")]
    return max((float(mark.kwargs.get("seconds", 1)) for mark in marks), default=0.0)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    files: dict[str, list[pytest.Item]] = {}
    for item in items:
        files.setdefault(item.nodeid.split("::")[0], []).append(item)
    order = sorted(files.values(), key=_file_cost, reverse=True)  # stable: ties keep order
    items[:] = [item for group in order for item in group]
