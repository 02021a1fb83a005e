"""Training recipes: versioned JSON files in ``training/recipes/``.

* ``cifar``: He et al. 2015, sec. 4.2 (CIFAR-10).
* ``imagenet``: He et al. 2015, sec. 3.4 (ImageNet).
* ``modern``: warm-up + cosine, label smoothing, no decay on BN/bias, zero-init residual.
* ``finetune``: from pretrained weights (``--weights``): a tenth of the rate, 10 epochs,
  warm-up + cosine.
* ``qat``: quantization-aware training from a trained network (``--qat int8``): a small
  rate, 3 epochs, activation ranges observed during the first 30 % of the steps.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from keras_resnet.training.errors import UsageError

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
    if not isinstance(recipe, dict):
        raise UsageError(f"recipe {str(path)!r} is not a JSON object")
    missing = [k for k in _REQUIRED if k not in recipe]
    if missing:
        raise UsageError(f"recipe {str(path)!r} lacks {', '.join(missing)}")
    if "steps" not in recipe and "epochs" not in recipe:
        raise UsageError(f"recipe {str(path)!r} needs 'steps' or 'epochs'")
    problem = recipe_problem(recipe)
    if problem:
        raise UsageError(f"recipe {str(path)!r}: {problem}")
    return recipe


def _number(value: Any, low: float, high: float, *, integer: bool = False,
            high_open: bool = False) -> bool:
    """A JSON number (an int when ``integer``; never a bool) in ``low..high``."""
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value):
        return False
    return low <= value < high if high_open else low <= value <= high


#: key -> (check, what is allowed), for the values :func:`recipe_problem` checks.
_TOP = {
    "name": (lambda v: isinstance(v, str) and bool(v), "a name"),
    "version": (lambda v: _number(v, 1, 10**6, integer=True), "an integer >= 1"),
    "batch_size": (lambda v: _number(v, 1, 2**20, integer=True), "an integer in 1..1048576"),
    "base_batch_size": (lambda v: _number(v, 1, 2**20, integer=True),
                        "an integer in 1..1048576"),
    "steps": (lambda v: v is None or _number(v, 1, 10**9, integer=True),
              "null or an integer in 1..1000000000"),
    "epochs": (lambda v: v is None or _number(v, 1e-9, 10**6), "null or a number in (0, 1e6]"),
    "weight_decay": (lambda v: _number(v, 0, 1), "a number in 0..1"),
    "label_smoothing": (lambda v: _number(v, 0, 1, high_open=True), "a number in [0, 1)"),
    "input_size": (lambda v: v is None or _number(v, 8, 1024, integer=True),
                   "null or an integer in 8..1024"),
    "decay_norm_and_bias": (lambda v: isinstance(v, bool), "true or false"),
    "qat_observe_fraction": (lambda v: _number(v, 1e-9, 1), "a number in (0, 1]"),
    "zero_init_residual": (lambda v: isinstance(v, bool), "true or false"),
    "preprocessing": (lambda v: v in ("per_pixel_mean", "per_channel_standardize"),
                      "per_pixel_mean or per_channel_standardize"),
    "optimizer": (lambda v: isinstance(v, dict) and v.get("name") == "sgd"
                  and _number(v.get("learning_rate"), 1e-12, 1e3)
                  and _number(v.get("momentum", 0.0), 0, 1, high_open=True)
                  and isinstance(v.get("nesterov", False), bool),
                  'an object {"name": "sgd", "learning_rate": > 0, "momentum": in [0, 1), '
                  '"nesterov": true/false}'),
    "schedule": (lambda v: isinstance(v, dict) and _schedule_ok(v),
                 'an object {"type": "step" with "boundaries" (integers) and "factor", or '
                 '"cosine" with "final_fraction" in 0..1, or "constant"}'),
    "warmup": (lambda v: v is None or (isinstance(v, dict) and _warmup_ok(v)),
               'null or {"type": "constant"/"linear", "steps": integer >= 0 or "fraction" in '
               '[0, 1), "learning_rate": >= 0, "models": [names]}'),
    "augmentation": (lambda v: isinstance(v, dict) and _augmentation_ok(v),
                     'an object {"type": auto, pad_crop_flip, scale_crop_flip or none, with '
                     'integer sizes}'),
}


def _schedule_ok(v: dict[str, Any]) -> bool:
    if v.get("type") == "step":
        bounds = v.get("boundaries", [])
        return (isinstance(bounds, list) and all(_number(b, 0, 10**9, integer=True)
                                                  for b in bounds)
                and _number(v.get("factor", 0.1), 0, 1e3))
    if v.get("type") == "cosine":
        return _number(v.get("final_fraction", 0.0), 0, 1)
    return v.get("type") == "constant"


def _warmup_ok(v: dict[str, Any]) -> bool:
    models = v.get("models", [])
    return (v.get("type") in ("constant", "linear")
            and _number(v.get("steps", 0), 0, 10**9, integer=True)
            and _number(v.get("fraction", 0.0), 0, 1, high_open=True)
            and _number(v.get("learning_rate", 0.0), 0, 1e3)
            and isinstance(models, list) and all(isinstance(m, str) for m in models))


def _augmentation_ok(v: dict[str, Any]) -> bool:
    sizes = ("pad", "min_side", "max_side", "eval_side")
    color = v.get("color") or {}
    return (v.get("type", "auto") in ("auto", "pad_crop_flip", "scale_crop_flip", "none")
            and all(_number(v.get(k, 1), 0, 4096, integer=True) for k in sizes)
            and isinstance(color, dict) and _number(color.get("std", 0.1), 0, 10))


def recipe_problem(recipe: Any) -> str | None:
    """What is wrong with a recipe's values (naming the key and what is allowed), or None."""
    if not isinstance(recipe, dict):
        return "is not a JSON object"
    for key, (ok, allowed) in _TOP.items():
        if key in recipe and not ok(recipe[key]):
            return f"{key!r} is {recipe[key]!r}; expected {allowed}"
    return None
