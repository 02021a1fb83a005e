"""Small real datasets that ship with a package, for offline examples and tests."""

from __future__ import annotations

import numpy as np

#: The fixed digits split: a RandomState(0) permutation of the 1,797 images; the last
#: 360 are the test set, the first 1,437 the training set.
DIGITS_SPLIT_SEED = 0
DIGITS_TEST_SIZE = 360
DIGITS_LABELS = [str(d) for d in range(10)]


def load_digits(input_size: int = 32) -> tuple[tuple[np.ndarray, np.ndarray],
                                               tuple[np.ndarray, np.ndarray]]:
    """scikit-learn's bundled handwritten digits as RGB images, keras.datasets-style:
    ``(x_train, y_train), (x_test, y_test)``.

    The 8x8 grey images (0..16) are scaled to 0..255, resized bilinearly to
    ``input_size`` x ``input_size`` and repeated over 3 channels: float32 NHWC in
    0..255; labels int64 0..9. The split is fixed (:data:`DIGITS_SPLIT_SEED`).
    """
    if not isinstance(input_size, int) or isinstance(input_size, bool) or input_size < 8:
        raise ValueError(f"input_size={input_size!r} must be an integer >= 8")
    import keras
    from sklearn.datasets import load_digits as sklearn_digits

    digits = sklearn_digits()
    images = digits.images.astype(np.float32) * (255.0 / 16.0)
    labels = digits.target.astype(np.int64)
    order = np.random.RandomState(DIGITS_SPLIT_SEED).permutation(len(labels))
    images, labels = images[order][..., None], labels[order]
    if input_size != 8:
        images = keras.ops.convert_to_numpy(keras.ops.image.resize(
            images, (input_size, input_size), interpolation="bilinear", antialias=False,
            data_format="channels_last"))
    rgb = np.repeat(np.clip(images, 0.0, 255.0), 3, axis=-1).astype(np.float32)
    n_train = len(labels) - DIGITS_TEST_SIZE
    return (rgb[:n_train], labels[:n_train]), (rgb[n_train:], labels[n_train:])
