"""Every ``python -m MODULE`` that README.md and docs/*.md show runs with ``--help`` from
outside the repository (so a path that works only from the repository root, such as
``export.benchmark``, fails): exit code 0 and a usage text.

The modules run one after the other in one subprocess (``runpy``, as ``python -m`` does),
so TensorFlow is imported once."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
#: ``python -m NAME`` or ``python3 -m NAME``, the name possibly on the next line.
COMMAND = re.compile(r"\bpython3?\s+-m\s+([A-Za-z_][\w.]*[\w])")
#: Modules of other projects the documents run (the rest must be this project's).
OTHER_PROJECTS = {"venv", "pytest"}

DRIVER = r"""
import contextlib, io, json, runpy, sys
found = {}
for name in sys.argv[1:]:
    out, code = io.StringIO(), 0
    sys.argv = [name, "--help"]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            runpy.run_module(name, run_name="__main__", alter_sys=True)
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    except ImportError as exc:
        code, out = 1, io.StringIO(f"ImportError: {exc}")
    found[name] = {"code": code, "text": out.getvalue()[:2000]}
print("\n" + json.dumps(found))
"""


def documented_modules() -> dict[str, list[str]]:
    """Module name -> the documents that run it with ``python -m``."""
    modules: dict[str, list[str]] = {}
    for path in DOCUMENTS:
        for name in COMMAND.findall(path.read_text()):
            modules.setdefault(name, []).append(path.name)
    return modules


def test_every_documented_python_m_command_runs_with_help(tmp_path: Path) -> None:
    modules = documented_modules()
    assert {"keras_resnet.tools.export_benchmark", "keras_resnet.training.experiments",
            "keras_resnet.tools.int8_schemes"} <= set(modules)
    foreign = {m for m in modules if not m.startswith("keras_resnet")} - OTHER_PROJECTS
    assert not foreign, f"not this project's installed modules: {foreign}"
    proc = subprocess.run([sys.executable, "-c", DRIVER, *modules], cwd=tmp_path,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    failed = {name: (modules[name], result["text"][:300]) for name, result in found.items()
              if result["code"] != 0 or "usage:" not in result["text"]}
    assert not failed
