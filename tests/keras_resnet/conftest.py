"""Shared helpers for the zoo tests (backend-agnostic: no tensorflow import)."""

import h5py
import numpy as np
import pytest


def save_legacy_h5(model, path, drop=()):
    """Write ``model``'s weights in the legacy Keras HDF5 layout of keras.applications'
    published files: root attr ``layer_names``; one group a layer with attr
    ``weight_names`` such as ``conv1_conv/kernel:0``."""
    with h5py.File(path, "w") as f:
        kept = [layer for layer in model.layers if layer.name not in drop]
        f.attrs["layer_names"] = [layer.name.encode() for layer in kept]
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.2.4"
        for layer in kept:
            group = f.create_group(layer.name)
            names = [f"{layer.name}/{w.name}:0" for w in layer.weights]
            group.attrs["weight_names"] = [n.encode() for n in names]
            for n, w in zip(names, layer.weights, strict=True):
                group.create_dataset(n, data=np.asarray(w))


def randomize(model, seed=0):
    """Random weights everywhere, BN statistics included, so outputs are informative."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        values = []
        for w in layer.weights:
            shape = tuple(w.shape)
            if w.name == "moving_variance":
                values.append(rng.uniform(0.5, 1.5, shape))
            elif w.name == "gamma":
                values.append(rng.uniform(0.5, 1.0, shape))
            else:
                fan_in = int(np.prod(shape[:-1])) if len(shape) > 1 else 10
                values.append(rng.normal(0, (2.0 / fan_in) ** 0.5 * 0.5, shape))
        if values:
            layer.set_weights([v.astype("float32") for v in values])
    return model


@pytest.fixture
def images():
    def make(n, size, seed=1):
        return np.random.default_rng(seed).uniform(0, 255, (n, size, size, 3)).astype("float32")
    return make


@pytest.fixture(name="save_legacy_h5")
def _save_legacy_h5_fixture():
    return save_legacy_h5


@pytest.fixture(name="randomize")
def _randomize_fixture():
    return randomize


#: timm architecture -> (block kind, blocks per stage, groups, width_per_group).
TIMM_ARCHS = {
    "resnet18": ("basic", (2, 2, 2, 2), 1, 64),
    "resnet34": ("basic", (3, 4, 6, 3), 1, 64),
    "resnet50": ("bottleneck", (3, 4, 6, 3), 1, 64),
    "resnet101": ("bottleneck", (3, 4, 23, 3), 1, 64),
    "resnet152": ("bottleneck", (3, 8, 36, 3), 1, 64),
    "resnext50_32x4d": ("bottleneck", (3, 4, 6, 3), 32, 4),
}


def timm_state_dict(arch, classes=1000, seed=0):
    """Random tensors with the names, shapes and dtypes of timm's ResNet ``state_dict()``
    (torch layouts: OIHW kernels, (out, in) classifier), BN buffers included."""
    kind, blocks, groups, per_group = TIMM_ARCHS[arch]
    rng = np.random.default_rng(seed)
    tensors = {}

    def conv(name, out, inp, k, g=1):
        fan_in = inp // g * k * k
        tensors[f"{name}.weight"] = rng.normal(0, 0.8 * (2 / fan_in) ** 0.5,
                                               (out, inp // g, k, k)).astype("float32")

    def bn(name, c):
        tensors[f"{name}.weight"] = rng.uniform(0.5, 1.0, c).astype("float32")
        tensors[f"{name}.bias"] = rng.normal(0, 0.1, c).astype("float32")
        tensors[f"{name}.running_mean"] = rng.normal(0, 0.1, c).astype("float32")
        tensors[f"{name}.running_var"] = rng.uniform(0.5, 1.5, c).astype("float32")
        tensors[f"{name}.num_batches_tracked"] = np.array(1000, dtype="int64")

    conv("conv1", 64, 3, 7)
    bn("bn1", 64)
    expansion = 4 if kind == "bottleneck" else 1
    inp = 64
    for s, (count, planes) in enumerate(zip(blocks, (64, 128, 256, 512), strict=True)):
        out = planes * expansion
        width = planes * per_group // 64 * groups
        for b in range(count):
            p = f"layer{s + 1}.{b}"
            if kind == "basic":
                conv(f"{p}.conv1", planes, inp, 3)
                bn(f"{p}.bn1", planes)
                conv(f"{p}.conv2", planes, planes, 3)
                bn(f"{p}.bn2", planes)
            else:
                conv(f"{p}.conv1", width, inp, 1)
                bn(f"{p}.bn1", width)
                conv(f"{p}.conv2", width, width, 3, groups)
                bn(f"{p}.bn2", width)
                conv(f"{p}.conv3", out, width, 1)
                bn(f"{p}.bn3", out)
            if b == 0 and (inp != out or s > 0):
                conv(f"{p}.downsample.0", out, inp, 1)
                bn(f"{p}.downsample.1", out)
            inp = out
    tensors["fc.weight"] = rng.normal(0, inp ** -0.5, (classes, inp)).astype("float32")
    tensors["fc.bias"] = rng.normal(0, 0.1, classes).astype("float32")
    return tensors


def write_timm_checkpoint(folder, arch, classes=1000, seed=0, drop=(), extra=None,
                          config=True):
    """Write ``model.safetensors`` (and timm's ``config.json``) into ``folder``."""
    import json

    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v for k, v in timm_state_dict(arch, classes, seed).items() if k not in drop}
    tensors.update(extra or {})
    save_file(tensors, str(folder / "model.safetensors"))
    if config:
        cfg = {"architecture": arch, "num_classes": classes, "num_features": 512,
               "pretrained_cfg": {"input_size": [3, 224, 224], "interpolation": "bicubic",
                                  "crop_pct": 0.95, "mean": [0.485, 0.456, 0.406],
                                  "std": [0.229, 0.224, 0.225]}}
        (folder / "config.json").write_text(json.dumps(cfg))
    return folder / "model.safetensors"


@pytest.fixture(name="timm_checkpoint", scope="session")
def _timm_checkpoint_fixture():
    return write_timm_checkpoint


@pytest.fixture
def fake_hub(monkeypatch, tmp_path):
    """A loopback stand-in for the hub's ``resolve`` endpoint (HEAD and GET), with
    ``HF_ENDPOINT`` and ``HF_HUB_CACHE`` pointed at it and at ``tmp_path / "hub"``.

    Call it with ``{"/timm/NAME/resolve/main/model.safetensors": bytes}``; ``truncate``
    sends half of each body; ``etag`` overrides the published SHA-256."""
    import hashlib
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    servers = []

    def start(files, truncate=False, etag=None):
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _head(self):
                body = files.get(self.path.split("?")[0])
                self.send_response(404 if body is None else 200)
                if body is None:
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None
                self.send_header("X-Repo-Commit", "0" * 40)
                self.send_header("ETag", f'"{etag or hashlib.sha256(body).hexdigest()}"')
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                return body

            def do_HEAD(self):
                self._head()

            def do_GET(self):
                resume = truncate and "Range" in self.headers
                body = self._head()
                if body is not None and not resume:  # a resumed download gets no byte more
                    self.wfile.write(body[: len(body) // 2] if truncate else body)

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
        return server

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    yield start
    for server in servers:
        server.shutdown()
        server.server_close()
