"""The trainer builds every network of the zoo: plain nets and shortcut options A/B/C as
section 3.3 describes them, the options in the run identity, bad combinations refused; and
the layer-response statistic of Figure 7 checked by hand."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from keras_resnet.training import cli
from keras_resnet.training.checkpoints import check_model_dir
from keras_resnet.training.errors import UsageError
from keras_resnet.training.model import build_model
from keras_resnet.training.responses import response_probe, response_stds


def _config(*flags: str, model: str = "resnet20"):
    args = cli.build_train_parser().parse_args(["--model", model, "--model-dir", "/tmp/unused",
                                                *flags])
    family = "cifar" if model.startswith("resnet") and int(model[6:]) % 6 == 2 else "imagenet"
    return cli.config_from_args(args, family)


def _network(*flags: str):
    cfg = _config(*flags)
    model = build_model(cfg.model.model, input_size=8, classes=10, preprocessing="per_pixel_mean",
                        pixel_mean=np.zeros(8 * 8 * 3, np.float32),
                        channel_std=np.ones(3, np.float32), zero_init_residual=False,
                        softmax=True, model_kwargs=cfg.model.architecture)
    import keras

    return next(layer for layer in model.layers if isinstance(layer, keras.Model))


def _kinds(backbone) -> dict[str, int]:
    names = [layer.name for layer in backbone.layers]
    return {"add": sum(type(layer).__name__ == "Add" for layer in backbone.layers),
            "projections": sum(n.endswith("_0_conv") for n in names),
            "zero_pads": sum(n.endswith("_0_pad") for n in names),
            "params": int(sum(np.prod(w.shape) for w in backbone.trainable_weights))}


def test_plain_and_shortcut_options_are_section_3_3() -> None:
    plain, a, b, c = (_kinds(_network(*f)) for f in
                      (["--plain"], ["--shortcut", "A"], ["--shortcut", "B"], ["--shortcut", "C"]))
    # Plain (Figure 3 middle): no shortcut, no addition, the same weights as option A.
    assert plain == {"add": 0, "projections": 0, "zero_pads": 0, "params": a["params"]}
    # ResNet-20: 9 blocks, each with an addition; stages grow 16 -> 32 -> 64 twice.
    assert a == {"add": 9, "projections": 0, "zero_pads": 2, "params": 269722}  # Table 6: 0.27 M
    assert (b["add"], b["projections"], b["zero_pads"]) == (9, 2, 0)  # only where dims grow
    assert (c["add"], c["projections"], c["zero_pads"]) == (9, 9, 0)  # every shortcut
    assert a["params"] < b["params"] < c["params"]


def test_network_options_are_recorded_and_part_of_the_identity(tmp_path: Path) -> None:
    cfg = _config("--variant", "v1.5", "--groups", "32", "--width-per-group", "4",
                  "--drop-path-rate", "0.1", "--zero-init-residual", model="resnet50")
    assert cfg.model.architecture == {"residual": True, "shortcut": "B", "variant": "v1.5",
                                "drop_path_rate": 0.1, "widen_factor": 1, "groups": 32,
                                "width_per_group": 4}
    assert cfg.model.zero_init_residual and "architecture" in cfg.identity()
    assert _config("--model", "wide_resnet28_10", model="wide_resnet28_10").model.architecture[
        "widen_factor"] == 10
    plain = _config("--plain")
    (tmp_path / "model.keras").write_bytes(b"")
    (tmp_path / "run_config.json").write_text(json.dumps({"identity": plain.identity()}))
    assert not check_model_dir(tmp_path, plain.identity())  # same network: accepted
    with pytest.raises(UsageError, match=r"architecture\.residual: False there, True now"):
        check_model_dir(tmp_path, _config().identity())
    with pytest.raises(UsageError, match=r"architecture\.shortcut: 'A' there, 'C' now"):
        check_model_dir(tmp_path, _config("--plain", "--shortcut", "C").identity())


@pytest.mark.parametrize(("flags", "expected"), [
    (["--shortcut", "D"], "argument --shortcut: invalid choice: 'D'"),
    (["--groups", "2"], "--groups and --width-per-group apply to ImageNet bottleneck models"),
    (["--drop-path-rate", "1"], "--drop-path-rate must be in [0, 1), got 1.0"),
    (["--drop-path-rate", "nan"], "--drop-path-rate must be in [0, 1), got nan"),
    (["--widen-factor", "0"], "--widen-factor must be at least 1, got 0"),
    (["--model", "resnet50", "--widen-factor", "2"], "--widen-factor applies to CIFAR-family"),
    (["--model", "resnet18", "--groups", "2"], "resnet18: groups and width_per_group apply to "
                                               "bottleneck networks only"),
])
def test_bad_network_flags(tmp_path: Path, capsys, no_heavy_work, flags: list[str],
                           expected: str) -> None:
    code = cli.train_main(["--model", "resnet20", "--steps", "2", "--model-dir",
                           str(tmp_path / "run"), *flags])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ")
    assert expected in lines[0]
    assert not (tmp_path / "run").exists()


def _conv3x3(x: np.ndarray, kernel: np.ndarray, stride: int = 1) -> np.ndarray:
    """'same' 3x3 convolution, stride 1, written out by hand."""
    n, h, w, _ = x.shape
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    out = np.zeros((n, h, w, kernel.shape[-1]))
    for i in range(3):
        for j in range(3):
            out += np.einsum("nhwc,cd->nhwd", padded[:, i:i + h, j:j + w], kernel[i, j])
    return out


def _batch_norm(x: np.ndarray, layer) -> np.ndarray:
    gamma, beta, mean, var = (np.asarray(w, np.float64) for w in layer.get_weights())
    return gamma * (x - mean) / np.sqrt(var + layer.epsilon) + beta


def test_response_statistic_by_hand() -> None:
    """Figure 7's statistic: std of each 3x3 layer's output after its BN, before the ReLU
    and the addition, over all valid test images (padding examples left out)."""
    import keras

    rng = np.random.default_rng(0)
    model = build_model("resnet20", input_size=8, classes=10, preprocessing="per_pixel_mean",
                        pixel_mean=rng.uniform(0, 255, 8 * 8 * 3).astype(np.float32),
                        channel_std=np.ones(3, np.float32), zero_init_residual=False,
                        softmax=True, model_kwargs={"shortcut": "C"})
    backbone = next(layer for layer in model.layers if isinstance(layer, keras.Model))
    for layer in backbone.layers:  # BN statistics and affine weights far from the identity
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 2, c), rng.normal(0, 0.5, c),
                               rng.normal(0, 0.3, c), rng.uniform(0.5, 3, c)])
    probe, names = response_probe(model)
    assert len(names) == 19 and names[:3] == ["conv1_bn", "conv2_block1_1_bn",
                                              "conv2_block1_2_bn"]
    assert not [n for n in names if "_0_" in n]  # option C's 1x1 projections are not 3x3

    images = rng.uniform(0, 255, (6, 8, 8, 3)).astype(np.float32)
    batches = [(images[:3], None, np.ones(3)), (images[3:], None, np.array([1.0, 0.0, 0.0]))]
    measured = response_stds(probe, names, batches)

    valid = images[:4].astype(np.float64)
    x = (valid - model.get_layer("preprocessing").mean.numpy()) / 255.0
    expected = []
    for name in names[:3]:
        conv = backbone.get_layer(name.replace("_bn", "_conv")).get_weights()[0]
        response = _batch_norm(_conv3x3(x, conv.astype(np.float64)), backbone.get_layer(name))
        expected.append(response.std())
        x = np.maximum(response, 0.0)  # the next 3x3 layer sees the ReLU of this response
    assert [m["std"] for m in measured[:3]] == pytest.approx(expected, rel=1e-4)
    assert [m["index"] for m in measured] == list(range(1, 20))
