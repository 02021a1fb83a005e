"""Fine-tuning in the trainer (``--weights``, ``--freeze``, the ``finetune`` recipe).

Transfer is measured, not assumed: ResNet-20 is pretrained on digits 0-4 (a ``folder:``
dataset of PNG files this module writes), then fine-tuned on digits 5-9; seeded, the
pretrained start must beat a random start at the same budget by a clear margin, and
``--freeze backbone`` must leave every backbone weight (batch-norm statistics included)
bit for bit as it was while the new classifier learns.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from keras_resnet.training import cli, finetune
from keras_resnet.training.errors import UsageError

pytestmark = pytest.mark.slow(seconds=95)  # pretrains ResNet-20 for 300 steps

REPO = Path(__file__).resolve().parents[2]
FAST = ["--input-size", "16", "--batch-size", "32", "--log-every", "10", "--seed", "1",
        "--mean-images", "256", "--eval-examples", "178", "--threads", "1"]


def _zoo_conftest():
    """tests/keras_resnet/conftest.py's timm checkpoint writer (conftest modules cannot be
    imported by name under importlib mode)."""
    spec = importlib.util.spec_from_file_location(
        "zoo_conftest", REPO / "tests" / "keras_resnet" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write_digits(root: Path, digits: range, size: int = 16) -> Path:
    from PIL import Image

    from keras_resnet.datasets import load_digits

    (x_train, y_train), (x_test, y_test) = load_digits(size)
    for split, images, labels in (("train", x_train, y_train), ("val", x_test, y_test)):
        for i, (image, label) in enumerate(zip(images, labels, strict=True)):
            if int(label) in digits:
                folder = root / split / f"digit{int(label)}"
                folder.mkdir(parents=True, exist_ok=True)
                Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(folder / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("digits")
    return {"first": f"folder:{_write_digits(root / 'd04', range(0, 5))}",
            "second": f"folder:{_write_digits(root / 'd59', range(5, 10))}"}


def _train(*argv: str):
    return cli.train_from_args([*FAST, *argv])


@pytest.fixture(scope="module")
def pretrained(digits, tmp_path_factory) -> Path:
    """ResNet-20 trained on digits 0-4 (cifar recipe, 300 steps, about 92 % top-1)."""
    model_dir = tmp_path_factory.mktemp("pre") / "run"
    _train("--model", "resnet20", "--dataset", digits["first"], "--steps", "300",
           "--learning-rate", "0.4", "--model-dir", str(model_dir))
    return model_dir


def _fine_tune(digits, model_dir: Path, *extra: str):
    return _train("--model", "resnet20", "--dataset", digits["second"], "--steps", "20",
                  "--recipe", "finetune", "--learning-rate", "0.4", "--model-dir", str(model_dir), *extra)


# --- bad input: one error line, exit 2, before heavy work ------------------------------------

def _fails(capsys, argv: list[str], expected: str) -> str:
    code = cli.train_main(argv)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert expected in lines[0], lines[0]
    return lines[0]


def test_bad_weights_and_freeze_are_refused_before_anything_is_built(
        tmp_path, capsys, monkeypatch, no_heavy_work) -> None:
    base = ["--model", "resnet20", "--steps", "2", "--batch-size", "4", "--input-size", "16",
            "--model-dir", str(tmp_path / "run")]
    for suffix in (".pth", ".bin"):
        pickle = tmp_path / f"model{suffix}"
        pickle.write_bytes(b"\x80\x04not opened")
        line = _fails(capsys, [*base, "--weights", str(pickle)], "pickle-based PyTorch file")
        assert "safetensors" in line
    _fails(capsys, [*base, "--weights", str(tmp_path / "nope.keras")], "no such file")
    odd = tmp_path / "weights.npz"
    odd.write_bytes(b"x")
    _fails(capsys, [*base, "--weights", str(odd)], "expected imagenet, timm/NAME")
    _fails(capsys, [*base, "--weights", str(tmp_path)], "has none")
    _fails(capsys, [*base, "--freeze", "stage9", "--weights", str(odd)],
           "--freeze 'stage9': expected one of none, stem, stage1")
    _fails(capsys, [*base, "--freeze", "stage4", "--weights", str(odd)],
           "resnet20 has 3 stages")
    _fails(capsys, [*base, "--freeze", "backbone"], "--freeze backbone needs --weights")
    # Offline (port 9 refuses connections): at once, saying how to pass a local file.
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    imagenet = ["--model", "resnet18", *base[2:6], "--input-size", "32", *base[8:]]
    line = _fails(capsys, [*imagenet, "--weights", "timm/resnet18.a1_in1k"],
                  "cannot reach the Hugging Face hub")
    assert "resnet18.a1_in1k/model.safetensors" in line
    line = _fails(capsys, [*imagenet, "--weights", "imagenet"], "cannot reach")  # timm's a1
    _fails(capsys, [*imagenet, "--weights", "timm/resnet50.a1_in1k"], "use --model resnet50")
    assert not (tmp_path / "run").exists()


def test_weights_of_another_architecture_are_refused(tmp_path, capsys, no_heavy_work) -> None:
    import keras_resnet

    zoo = _zoo_conftest()
    r18 = zoo.write_timm_checkpoint(tmp_path / "r18", "resnet18")
    base = ["--steps", "2", "--batch-size", "4", "--input-size", "32",
            "--model-dir", str(tmp_path / "run")]
    _fails(capsys, ["--model", "resnet34", *base, "--weights", str(r18)],
           "hold resnet18 (basic blocks 2-2-2-2), but --model is resnet34")
    _fails(capsys, ["--model", "resnet20", *base, "--weights", str(r18)], "--model resnet18")
    _fails(capsys, ["--model", "resnet18", *base, "--weights", str(r18), "--variant", "v1"],
           "leave --variant unset")
    h5 = tmp_path / "r20.weights.h5"
    keras_resnet.create_model("resnet20", input_shape=(16, 16, 3), classes=5).save_weights(h5)
    _fails(capsys, ["--model", "resnet32", *base, "--weights", str(h5)],
           f"--weights {h5.resolve()} do not fit --model resnet32")
    assert not (tmp_path / "run").exists()


# --- the functions ---------------------------------------------------------------------------

def test_freeze_parts_follow_the_stage_names() -> None:
    import keras_resnet

    net = keras_resnet.create_model("resnet18", input_shape=(32, 32, 3), classes=3)
    names = [layer.name for layer in net.layers if layer.weights]
    for freeze, last in (("stem", "conv1_bn"), ("stage1", "conv2_block2_2_bn"),
                         ("stage3", "conv4_block2_2_bn"), ("backbone", "conv5_block2_2_bn")):
        frozen = [n for n in names if finetune.frozen_part(n, freeze)]
        assert frozen == names[:names.index(last) + 1], freeze
    assert not any(finetune.frozen_part(n, None) for n in names)
    assert finetune.apply_freeze(net, "backbone") == names[:-1]
    assert [v.path for v in net.trainable_weights] == ["predictions/kernel", "predictions/bias"]


def test_frozen_batch_norm_runs_in_inference_mode_also_when_fused() -> None:
    from keras_resnet.training.fused_norm import with_fused_batch_norm

    import keras_resnet

    net = with_fused_batch_norm(keras_resnet.create_model("resnet20", input_shape=(16, 16, 3),
                                                          classes=3))
    finetune.apply_freeze(net, "stage1")
    before = {w.path: np.array(w) for w in net.weights}
    x = np.random.default_rng(0).normal(size=(4, 16, 16, 3)).astype("float32")
    stem = net.get_layer("conv1_bn")
    features = np.repeat(x[..., :1], 16, axis=-1)
    np.testing.assert_array_equal(np.asarray(stem(features, training=True)),
                                  np.asarray(stem(features, training=False)))
    net(x, training=True)
    norms = [layer for layer in net.layers if hasattr(layer, "moving_mean")]
    assert len(norms) == 19
    for layer in norms:
        kept = all(np.array_equal(np.asarray(w), before[w.path])
                   for w in (layer.moving_mean, layer.moving_variance))
        assert kept == finetune.frozen_part(layer.name, "stage1"), layer.name


def test_classifier_kept_only_for_the_same_classes() -> None:
    ref = finetune.WeightsRef("x", "keras", "x", "0" * 64)
    named = finetune.Pretrained(ref, None, 3, ["a", "b", "c"])
    assert finetune.keeps_classifier(named, ["a", "b", "c"])
    assert not finetune.keeps_classifier(named, ["a", "c", "b"])
    assert not finetune.keeps_classifier(named, ["a", "b"])
    assert finetune.keeps_classifier(finetune.Pretrained(ref, None, 2, None), ["p", "q"])


def test_timm_weights_bring_their_layout_and_normalisation(tmp_path) -> None:
    zoo = _zoo_conftest()
    path = zoo.write_timm_checkpoint(tmp_path / "r18", "resnet18", classes=7)
    ref = finetune.resolve_weights(str(path), model="resnet18", input_size=32)
    assert ref.architecture == {"layout": "torch", "variant": "v1.5"}
    np.testing.assert_allclose(ref.mean, (0.485 * 255, 0.456 * 255, 0.406 * 255), rtol=1e-6)
    np.testing.assert_allclose(ref.std, (0.229 * 255, 0.224 * 255, 0.225 * 255), rtol=1e-6)
    from keras_resnet.weights.hub import sha256_of

    assert ref.identity() == {"source": str(path.resolve()), "sha256": sha256_of(str(path))}


# --- training --------------------------------------------------------------------------------

def test_pretrained_start_beats_random_start_and_frozen_backbone_stays(
        digits, pretrained, tmp_path) -> None:
    tuned = _fine_tune(digits, tmp_path / "tuned", "--weights", str(pretrained))
    scratch = _fine_tune(digits, tmp_path / "scratch")
    # Measured here (seeds 1, 2, 3): 0.59 / 0.65 / 0.64 against 0.42 / 0.19 / 0.29.
    gain = tuned.metrics["eval_top1"] - scratch.metrics["eval_top1"]
    assert gain >= 0.12, (tuned.metrics["eval_top1"], scratch.metrics["eval_top1"])
    labels = json.loads((tmp_path / "tuned" / "labels.json").read_text())["labels"]
    assert labels == [f"digit{d}" for d in range(5, 10)]

    frozen = _fine_tune(digits, tmp_path / "frozen", "--weights", str(pretrained),
                        "--freeze", "backbone", "--precision", "mixed_bfloat16",
                        "--learning-rate", "2.0")
    import keras_resnet

    before = finetune.zoo_network(keras_resnet.load_model(pretrained / "model.keras"))
    after = finetune.zoo_network(keras_resnet.load_model(tmp_path / "frozen" / "model.keras"))
    checked = 0
    for layer in after.layers:
        for new, old in zip(layer.weights, before.get_layer(layer.name).weights, strict=True):
            if layer.name != "predictions":
                assert np.array_equal(np.asarray(new), np.asarray(old)), new.path
                checked += 1
    assert checked == len(after.weights) - 2
    assert frozen.metrics["trainable_params"] == 64 * 5 + 5  # the classifier only
    assert frozen.metrics["eval_top1"] >= 0.45, frozen.metrics["eval_top1"]  # chance: 0.2


def test_resume_keeps_the_weights_identity_and_does_not_reload(
        digits, pretrained, tmp_path, monkeypatch, capsys) -> None:
    model_dir = tmp_path / "run"
    args = ["--model", "resnet20", "--dataset", digits["second"], "--model-dir", str(model_dir),
            "--checkpoint-every", "2", "--recipe", "finetune", "--weights", str(pretrained), "--freeze", "stem"]
    _train(*args, "--steps", "2")
    recorded = json.loads((model_dir / "run_config.json").read_text())["identity"]
    assert recorded["weights"]["source"] == str((pretrained / "model.keras").resolve())
    assert recorded["freeze"] == "stem"

    def reload(*a, **k):
        raise AssertionError("the weights were loaded again on resume")

    monkeypatch.setattr(finetune, "load_source", reload)
    result = _train(*args, "--steps", "4")
    assert result.metrics["step"] == 4 and "resumed from step 2" in capsys.readouterr().out
    other = tmp_path / "copy"
    other.mkdir()
    (other / "model.keras").write_bytes((pretrained / "model.keras").read_bytes())
    with pytest.raises(UsageError, match=r"holds a different run \(weights.source"):
        _train(*args[:-4], "--weights", str(other), "--freeze", "stem", "--steps", "6")
    changed = tmp_path / "changed.weights.h5"
    import keras_resnet

    keras_resnet.create_model("resnet20", input_shape=(16, 16, 3), classes=5).save_weights(changed)
    with pytest.raises(UsageError, match=r"holds a different run \(weights.sha256"):
        _train(*args[:-4], "--weights", str(changed), "--freeze", "stem", "--steps", "6")
    with pytest.raises(UsageError, match=r"holds a different run \(weights: \{"):
        _train(*args[:-4], "--steps", "6")
    with pytest.raises(UsageError, match=r"holds a different run \(freeze: 'stem' there"):
        _train(*args[:-1], "stage1", "--steps", "6")


def test_keras_applications_caffe_weights_take_rgb_pixels(tmp_path, monkeypatch) -> None:
    """weights='imagenet' on ResNet-50 are keras.applications' Caffe-mode file (BGR minus
    the mean): with the first convolution's input channels reversed and the mean subtracted
    in RGB order, raw RGB pixels give the outputs of the original on Caffe's input."""
    from keras_resnet.training.architecture import BUILDER_DEFAULTS

    import keras_resnet
    from keras_resnet.weights import keras_files

    zoo = _zoo_conftest()
    original = keras_resnet.create_model("resnet50", input_shape=(32, 32, 3),
                                         classifier_activation=None)
    zoo.randomize(original)
    path = tmp_path / "resnet50_weights_tf_dim_ordering_tf_kernels.h5"
    zoo.save_legacy_h5(original, path)
    monkeypatch.setattr(keras_files, "fetch_imagenet", lambda name, include_top: str(path))
    ref = finetune.resolve_weights("imagenet", model="resnet50", input_size=32)
    assert ref.caffe_bgr and ref.source == "imagenet:resnet50" and ref.std == (1.0, 1.0, 1.0)
    pre = finetune.load_source(ref, model="resnet50", input_size=32,
                               architecture={**BUILDER_DEFAULTS, "shortcut": "B"})
    assert pre.classes == 1000
    pixels = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    mean, std = pre.statistics(32, None, None)
    ours = np.asarray(pre.network((pixels - mean.reshape(32, 32, 3)) / std))
    theirs = np.asarray(original(keras_resnet.preprocess_input(pixels.copy(), mode="caffe")))
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4 * np.abs(theirs).max())
