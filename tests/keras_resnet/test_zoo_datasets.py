"""The bundled digits split that the trainer and the exporter share."""

import numpy as np
import pytest

from keras_resnet.datasets import load_digits


def test_digits_split_is_fixed_rgb_and_covers_every_class():
    (x_train, y_train), (x_test, y_test) = load_digits(32)
    assert x_train.shape == (1437, 32, 32, 3) and x_test.shape == (360, 32, 32, 3)
    assert x_train.dtype == np.float32 and x_train.min() >= 0 and x_train.max() <= 255
    assert x_train.max() > 200  # scaled from 0..16
    np.testing.assert_array_equal(x_test[..., 0], x_test[..., 2])  # grey repeated to RGB
    assert set(np.unique(y_test)) == set(range(10))
    (x2, y2), (xt2, yt2) = load_digits(32)
    np.testing.assert_array_equal(yt2, y_test)
    np.testing.assert_array_equal(xt2, x_test)
    (x8, _), (xt8, yt8) = load_digits(8)
    np.testing.assert_array_equal(yt8, y_test)
    # Bilinear upscaling keeps each image's mean brightness within a few grey levels.
    np.testing.assert_allclose(x_test.mean(axis=(1, 2, 3)), xt8.mean(axis=(1, 2, 3)), atol=8)


def test_digits_rejects_a_bad_size():
    with pytest.raises(ValueError, match="input_size=4 must be an integer >= 8"):
        load_digits(4)
