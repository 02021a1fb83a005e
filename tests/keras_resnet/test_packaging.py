"""What is installed: the zoo alone by default, and import names that cannot collide with a
user's own ``training`` or ``export`` package."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

HEAVY = {"tensorflow", "tensorflow-datasets", "tf2onnx", "onnx", "onnxruntime",
         "ai-edge-litert", "scikit-learn", "matplotlib"}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].strip().lower().replace("_", "-")


def test_base_install_is_the_zoo_without_tensorflow() -> None:
    requires = importlib.metadata.requires("keras-resnet") or []
    base = {_name(r) for r in requires if "extra ==" not in r}
    assert "keras" in base
    assert not base & HEAVY, f"the base install pulls {sorted(base & HEAVY)}"
    extras = importlib.metadata.metadata("keras-resnet").get_all("Provides-Extra")
    assert {"training", "export", "all", "test"} <= set(extras)
    training = {_name(r) for r in requires if "extra == \"training\"" in r}
    assert {"tensorflow", "tensorflow-datasets"} <= training


def test_user_training_and_export_packages_are_not_shadowed(tmp_path: Path) -> None:
    for name in ("training", "export"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(f"OWNER = 'user {name}'\n")
    code = ("import importlib.util, training, export\n"
            "print(training.OWNER, '|', export.OWNER)\n"
            "spec = importlib.util.find_spec('keras_resnet.training.recipes')\n"
            "print(spec.origin)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, timeout=600, check=True).stdout.splitlines()
    assert out[0] == "user training | user export"
    assert Path(out[1]).name == "recipes.py" and Path(out[1]).parent != tmp_path / "training"


def test_a_missing_extra_is_named_in_one_line(capsys) -> None:
    from keras_resnet.console import UsageError, require_extra, run_command

    def body() -> int:
        require_extra("keras-resnet-train", "training", "json", "no_such_module_xyz")
        return 0

    assert run_command(body) == UsageError.exit_code == 2
    err = capsys.readouterr().err
    assert err == ("error: keras-resnet-train needs no_such_module_xyz: "
                   "pip install 'keras-resnet[training]'\n")
