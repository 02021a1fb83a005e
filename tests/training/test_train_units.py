"""Recipes, schedules, precision, strategy planning and the exported model's preprocessing."""

from __future__ import annotations

import json

import numpy as np
import pytest
from keras_resnet.training import compilation, precision, recipes, strategy
from keras_resnet.training.cli import build_train_parser, config_from_args
from keras_resnet.training.errors import UsageError


def _config(*flags: str, family: str = "cifar"):
    args = build_train_parser().parse_args(["--model-dir", "/tmp/unused", *flags])
    return config_from_args(args, family)


def test_recipes_are_versioned_json() -> None:
    assert recipes.list_recipes() == ["cifar", "finetune", "imagenet", "modern", "qat"]
    for name in recipes.list_recipes():
        recipe = recipes.load_recipe(name)
        assert recipe["name"] == name and isinstance(recipe["version"], int)


def test_cifar_recipe_is_section_4_2() -> None:
    cfg = _config("--model", "resnet56")
    assert (cfg.optim.batch_size, cfg.peak_learning_rate, cfg.optim.weight_decay, cfg.run.steps) == (
        128, 0.1, 1e-4, 64000)
    assert (cfg.optim.optimizer["momentum"] == 0.9
            and cfg.data.augmentation == {"type": "pad_crop_flip", "pad": 4})
    sched = cfg.make_schedule(64000)
    assert sched.value(0) == pytest.approx(0.1)
    assert sched.value(31999) == pytest.approx(0.1)
    assert sched.value(32000) == pytest.approx(0.01)
    assert sched.value(48000) == pytest.approx(0.001)
    assert cfg.schedule.warmup is None  # the 0.01 warm-up is for ResNet-110 only


def test_resnet110_warmup_and_linear_scaling() -> None:
    cfg = _config("--model", "resnet110", "--batch-size", "256")
    sched = cfg.make_schedule(64000)
    assert cfg.peak_learning_rate == pytest.approx(0.2)  # 0.1 * 256 / 128
    assert sched.value(0) == pytest.approx(0.02) and sched.value(399) == pytest.approx(0.02)
    assert sched.value(400) == pytest.approx(0.2)


def test_short_runs_keep_boundary_fractions() -> None:
    sched = _config("--model", "resnet20", "--steps", "400", "--batch-size", "64").make_schedule(400)
    assert [sched.value(s) for s in (199, 200, 300)] == pytest.approx([0.05, 0.005, 0.0005])


def test_imagenet_and_modern_recipes() -> None:
    cfg = _config("--model", "resnet50", family="imagenet")
    assert cfg.recipe == "imagenet" and cfg.optim.batch_size == 256 and cfg.model.input_size == 224
    aug = cfg.data.augmentation
    assert aug["min_side"] == 256 and aug["max_side"] == 480
    assert aug["color"] == {"type": "pca_lighting", "std": 0.1}  # sec. 3.4
    modern = _config("--model", "resnet50", "--recipe", "modern", "--steps", "1000",
                     family="imagenet")
    assert modern.optim.label_smoothing == 0.1 and modern.model.zero_init_residual
    assert not modern.optim.decay_norm_and_bias
    sched = modern.make_schedule(1000)
    assert sched.value(0) == pytest.approx(0.1 / 50)  # linear warm-up over 5 %
    assert sched.value(49) == pytest.approx(0.1)
    assert sched.value(525) == pytest.approx(0.05, rel=1e-3)  # cosine midpoint
    assert sched.value(1000) == pytest.approx(0.0, abs=1e-7)


def test_flags_override_recipe() -> None:
    cfg = _config("--model", "resnet20", "--learning-rate", "0.2", "--weight-decay", "0",
                  "--label-smoothing", "0.2", "--epochs", "3")
    assert cfg.peak_learning_rate == pytest.approx(0.2) and cfg.optim.weight_decay == 0
    assert cfg.run.steps is None and cfg.total_steps(1280) == 30
    with pytest.raises(UsageError, match="--label-smoothing must be below 1"):
        _config("--model", "resnet20", "--label-smoothing", "1")


def test_precision_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    assert precision.resolve_precision("auto", "gpu") == "mixed_float16"
    assert precision.resolve_precision("auto", "tpu") == "mixed_bfloat16"
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: True)
    assert precision.resolve_precision("auto", "cpu") == "mixed_bfloat16"
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: False)
    assert precision.resolve_precision("auto", "cpu") == "float32"
    assert precision.resolve_precision("float32", "gpu") == "float32"


def test_jit_compile_choice() -> None:
    assert _config("--model", "resnet20").run.jit_compile == "auto"
    assert _config("--model", "resnet20", "--jit").run.jit_compile == "on"  # the old spelling
    assert _config("--model", "resnet20", "--jit-compile", "off").run.jit_compile == "off"
    resolve = compilation.resolve_jit_compile
    assert resolve("on", "cpu", "mixed_bfloat16") is True
    assert resolve("off", "gpu", "mixed_float16") is False
    # auto: never on CPUs (measured slower in every precision), on GPUs with one replica only.
    for policy in ("float32", "mixed_bfloat16"):
        assert resolve("auto", "cpu", policy) is False
    assert resolve("auto", "gpu", "mixed_float16") is True
    assert resolve("auto", "gpu", "mixed_float16", replicas=2) is False


def test_jit_compile_on_refuses_a_step_xla_cannot_compile(tmp_path, th) -> None:
    # --seed turns on deterministic ops, and XLA has no deterministic max-pool gradient:
    # "on" is a usage error naming the cause, before any step runs.
    done = th.run_cli([*th.TINY, "--steps", "2", "--seed", "1", "--jit-compile", "on",
                       "--model-dir", str(tmp_path / "run")])
    assert done.returncode == 2, done.stderr
    assert "--jit-compile on: XLA cannot compile the training step" in done.stderr
    assert "deterministic" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_strategy_auto_from_tf_config(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("TPU_NAME", "COLAB_TPU_ADDR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(strategy, "_tpu_configured", lambda: False)
    cluster = {"worker": ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]}
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster,
                                                "task": {"type": "worker", "index": 1}}))
    plan = strategy.plan_strategy("auto")
    assert (plan.kind, plan.num_workers, plan.num_replicas, plan.is_chief) == (
        "multi_worker", 3, 3, False)
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"chief": ["h:1"], "worker": ["h:2"]},
                                                "task": {"type": "chief", "index": 0}}))
    plan = strategy.plan_strategy("auto")
    assert plan.is_chief and plan.num_workers == 2
    monkeypatch.delenv("TF_CONFIG")
    assert strategy.plan_strategy("auto").kind == "one_device"


def test_exported_model_bakes_in_preprocessing(tmp_path) -> None:
    import keras
    from keras_resnet.training.model import build_model, float32_copy

    mean = np.random.RandomState(0).uniform(0, 255, 16 * 16 * 3).astype(np.float32)
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        trained = build_model("resnet20", input_size=16, classes=10,
                              preprocessing="per_pixel_mean", pixel_mean=mean,
                              channel_std=np.ones(3, np.float32), zero_init_residual=False,
                              softmax=False)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    norm = trained.get_layer("preprocessing")
    x = np.random.RandomState(1).uniform(0, 255, (2, 16, 16, 3)).astype(np.float32)
    np.testing.assert_allclose(norm(x).numpy(), (x - mean.reshape(16, 16, 3)) / 255.0, atol=1e-5)
    export = float32_copy(trained, "resnet20", input_size=16, classes=10,
                          preprocessing="per_pixel_mean")
    export.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras", safe_mode=True)
    expected = keras.ops.softmax(trained(x)).numpy()
    np.testing.assert_allclose(loaded(x).numpy(), export(x).numpy(), atol=1e-6)
    np.testing.assert_allclose(loaded(x).numpy(), expected, atol=2e-2)  # bf16 vs float32


def test_modern_decays_kernels_only() -> None:
    import keras
    from keras_resnet.training.trainer import decayed_variables

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, use_bias=True, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.Dense(2, name="fc")(keras.layers.Flatten(name="flat")(x))
    model = keras.Model(inputs, x)
    kernels = decayed_variables(model, decay_norm_and_bias=False)
    assert sorted(v.path for v in kernels) == ["conv/kernel", "fc/kernel"]
    assert len(decayed_variables(model, decay_norm_and_bias=True)) == 6
