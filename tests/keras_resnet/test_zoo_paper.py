"""The zoo against the paper's numbers (Table 1, Table 6, section 3.3)."""

import sys

import keras
import pytest

import keras_resnet as kr

pytestmark = pytest.mark.slow(seconds=70)

# Table 6 (option A), exact trainable parameter counts of the 0.27 ... 19.4 M nets.
CIFAR_PARAMS = {20: 269_722, 32: 464_154, 44: 658_586, 56: 853_018, 110: 1_727_962}
# Table 1 parameters (M, torchvision's counts of the same nets) and multiply-adds (G).
IMAGENET = {18: (11.69, 1.8), 34: (21.80, 3.6), 50: (25.56, 3.8), 101: (44.55, 7.6),
            152: (60.19, 11.3)}


@pytest.mark.parametrize("depth", sorted(CIFAR_PARAMS))
def test_cifar_trainable_params_exact(depth):
    model = kr.create_model(f"resnet{depth}")
    assert kr.profile(model)["trainable_params"] == CIFAR_PARAMS[depth]
    assert model.input_shape == (None, 32, 32, 3) and model.output_shape == (None, 10)


def test_resnet1202_params_exact_at_default_recursion_limit():
    previous = sys.getrecursionlimit()
    sys.setrecursionlimit(1000)  # Python's default: building must cope with it
    try:
        model = kr.ResNet1202()
        assert kr.profile(model)["trainable_params"] == 19_421_274
        assert sys.getrecursionlimit() == 1000
    finally:
        sys.setrecursionlimit(previous)


def test_load_model_is_safe_and_gives_keras_headroom_for_deep_graphs(tmp_path, monkeypatch):
    """Loading ResNet-1202 needs ~1,300 nested frames in Keras' graph rebuild."""
    path = tmp_path / "r20.keras"
    kr.ResNet20().save(path)
    seen = {}
    real_load = keras.models.load_model

    def spy(filepath, **kwargs):
        seen.update(kwargs, limit=sys.getrecursionlimit())
        return real_load(filepath, **kwargs)

    monkeypatch.setattr(keras.models, "load_model", spy)
    before = sys.getrecursionlimit()
    loaded = kr.load_model(path)
    assert seen["safe_mode"] is True and seen["limit"] >= 20_000
    assert sys.getrecursionlimit() == before
    assert kr.profile(loaded)["trainable_params"] == CIFAR_PARAMS[20]
    with pytest.raises(FileNotFoundError, match="path=.*no such file"):
        kr.load_model(tmp_path / "missing.keras")


@pytest.mark.parametrize("depth", sorted(IMAGENET))
def test_imagenet_params_and_macs_match_table1(depth):
    params_m, gmacs = IMAGENET[depth]
    stats = kr.profile(kr.create_model(f"resnet{depth}"))
    assert abs(stats["trainable_params"] / 1e6 - params_m) / params_m < 0.005
    assert abs(stats["macs"] / 1e9 - gmacs) / gmacs < 0.03


def test_v15_moves_stride_to_3x3_and_costs_4_09_gmacs():
    v1, v15 = kr.ResNet50(), kr.ResNet50(variant="v1.5")
    assert v1.get_layer("conv3_block1_1_conv").strides == (2, 2)
    assert v1.get_layer("conv3_block1_2_conv").strides == (1, 1)
    assert v15.get_layer("conv3_block1_1_conv").strides == (1, 1)
    assert v15.get_layer("conv3_block1_2_conv").strides == (2, 2)
    assert kr.profile(v1)["macs"] / 1e9 == pytest.approx(3.86, abs=0.01)
    assert kr.profile(v15)["macs"] / 1e9 == pytest.approx(4.09, abs=0.01)
    assert kr.profile(v1)["params"] == kr.profile(v15)["params"]


@pytest.mark.parametrize("name", ["resnet20", "resnet56"])
def test_option_a_adds_no_parameters_so_plain_twin_has_same_count(name):
    resnet = kr.create_model(name)
    plain = kr.create_model(name, residual=False)
    assert kr.profile(plain)["params"] == kr.profile(resnet)["params"]
    assert not any(isinstance(layer, keras.layers.Add) for layer in plain.layers)
    assert sum(isinstance(layer, keras.layers.Add) for layer in resnet.layers) == (
        (int(name[6:]) - 2) // 2)
    assert plain.name.startswith("plain")


def test_imagenet_option_a_equals_plain_count():
    a = kr.ResNet34(shortcut="A", input_shape=(64, 64, 3))
    plain = kr.ResNet34(residual=False, input_shape=(64, 64, 3))
    assert kr.profile(a)["params"] == kr.profile(plain)["params"]


def _projections(model):
    return sorted(layer.name for layer in model.layers if layer.name.endswith("_0_conv"))


def test_shortcut_options_place_projections_as_section_3_3():
    nets = {opt: kr.ResNet34(shortcut=opt, input_shape=(64, 64, 3)) for opt in "ABC"}
    # ResNet-34: B projects only where channels grow (conv3..5 block 1).
    assert _projections(nets["B"]) == [
        "conv3_block1_0_conv", "conv4_block1_0_conv", "conv5_block1_0_conv"]
    # C projects on all 16 blocks; A on none.
    assert len(_projections(nets["C"])) == 16
    assert _projections(nets["A"]) == []
    # Bottleneck B: conv2_block1 grows 64 -> 256, so 4 projections (keras.applications' layout).
    assert len(_projections(kr.ResNet50(input_shape=(64, 64, 3)))) == 4
    a, b, c = (kr.profile(nets[opt])["params"] for opt in "ABC")
    assert a < b < c


def test_cifar_layout_section_4_2():
    model = kr.ResNet56()
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert len(convs) == 6 * 9 + 1  # 6n layers plus the first conv; FC makes 6n + 2
    assert convs[0].kernel_size == (3, 3) and convs[0].filters == 16
    assert {c.filters for c in convs} == {16, 32, 64}
    assert model.get_layer("conv4_block9_out").output.shape[1:] == (8, 8, 64)
    assert not any(isinstance(layer, keras.layers.MaxPooling2D) and layer.pool_size == (3, 3)
                   for layer in model.layers)


def test_imagenet_layout_table1():
    model = kr.ResNet50()
    conv1 = model.get_layer("conv1_conv")
    assert conv1.kernel_size == (7, 7) and conv1.strides == (2, 2) and conv1.filters == 64
    shapes = {s: model.get_layer(f"conv{s}_block1_out").output.shape[1:] for s in (2, 3, 4, 5)}
    assert shapes == {2: (56, 56, 256), 3: (28, 28, 512), 4: (14, 14, 1024), 5: (7, 7, 2048)}
    assert isinstance(model.get_layer("conv2_block1_2_conv").kernel_initializer,
                      keras.initializers.HeNormal)


def test_successors_match_their_papers():
    # Wide ResNet-28-10 (Zagoruyko and Komodakis 2016): 36.5 M parameters.
    assert kr.profile(kr.WideResNet28_10())["trainable_params"] == 36_479_194
    # ResNeXt-50 32x4d: 25.0 M, 4.2 GFLOPs as counted in its paper (Table 1: 4.2e9).
    resnext = kr.ResNeXt50_32x4d()
    rx = kr.profile(resnext)
    assert rx["trainable_params"] / 1e6 == pytest.approx(25.03, rel=0.005)
    assert rx["macs"] / 1e9 == pytest.approx(4.2, rel=0.12)
    wide_model = kr.WideResNet50_2()
    wide = kr.profile(wide_model)
    assert wide["trainable_params"] / 1e6 == pytest.approx(68.88, rel=0.005)
    assert wide_model.get_layer("conv2_block1_2_conv").filters == 128
    assert resnext.get_layer("conv2_block1_2_conv").groups == 32
