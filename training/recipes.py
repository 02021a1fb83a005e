"""Training recipes: versioned JSON files in ``training/recipes/``.

* ``cifar``: He et al. 2015, sec. 4.2 (CIFAR-10).
* ``imagenet``: He et al. 2015, sec. 3.4 (ImageNet).
* ``modern``: warm-up + cosine, label smoothing, no decay on BN/bias, zero-init residual.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from training.errors import UsageError

RECIPE_DIR = Path(__file__).resolve().parent / "recipes"
_REQUIRED = ("name", "version", "batch_size", "base_batch_size", "optimizer", "weight_decay",
             "schedule", "augmentation", "preprocessing")


def list_recipes() -> list[str]:
    """Names of the bundled recipes."""
    return sorted(p.stem for p in RECIPE_DIR.glob("*.json"))


def load_recipe(name: str) -> dict[str, Any]:
    """Load a bundled recipe by name, or a recipe JSON file by path."""
    path = Path(name)
    if not (name.endswith(".json") and path.is_file()):
        if name not in list_recipes():
            raise UsageError(f"unknown recipe {name!r}; choose one of {', '.join(list_recipes())} "
                             "or pass a recipe .json file")
        path = RECIPE_DIR / f"{name}.json"
    try:
        recipe = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UsageError(f"cannot read recipe {str(path)!r}: {exc}") from None
    missing = [k for k in _REQUIRED if k not in recipe]
    if missing:
        raise UsageError(f"recipe {str(path)!r} lacks {', '.join(missing)}")
    if "steps" not in recipe and "epochs" not in recipe:
        raise UsageError(f"recipe {str(path)!r} needs 'steps' or 'epochs'")
    return recipe
