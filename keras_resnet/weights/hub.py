"""Downloading timm checkpoints from the Hugging Face hub with ``huggingface_hub``.

A file already in huggingface_hub's cache is used without the network. Otherwise
one metadata request, without retries, decides at once whether the hub can be
reached; only then is the file downloaded, into the cache, and its SHA-256 checked
against the digest the hub publishes for it (its LFS ETag). A failed download
leaves no partial file behind.
"""

from __future__ import annotations

import hashlib
import os
import re

#: What a timm repository on the hub holds: the weights and the model's configuration.
CHECKPOINT_FILE = "model.safetensors"
CONFIG_FILE = "config.json"

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
#: Seconds the single reachability request may take.
METADATA_TIMEOUT = 10.0


def sha256_of(path: str) -> str:
    """SHA-256 of a file, read in 1 MiB pieces."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()

def _huggingface_hub(name: str):
    try:
        import huggingface_hub
    except ImportError:
        raise ImportError(f"weights={name!r}: downloading needs the huggingface_hub package "
                          "(pip install huggingface_hub), or pass a local .safetensors file"
                          ) from None
    return huggingface_hub


def offline_help(name: str, url: str) -> str:
    folder = name.split("/", 1)[1]
    return (f"On a machine with network access, download {url} and "
            f"{url.rsplit('/', 1)[0]}/{CONFIG_FILE} into a folder {folder}/ (for example "
            f"'hf download {name} {CHECKPOINT_FILE} {CONFIG_FILE} --local-dir {folder}'), "
            f"copy it here and pass weights='{folder}/{CHECKPOINT_FILE}'")


def _not_found_errors() -> tuple[type[Exception], ...]:
    from huggingface_hub import errors

    names = ("RepositoryNotFoundError", "RemoteEntryNotFoundError", "RevisionNotFoundError",
             "GatedRepoError")
    return tuple(t for t in (getattr(errors, n, None) for n in names) if t is not None)


def _settings() -> tuple[str | None, str | None]:
    """(endpoint, cache folder): ``HF_ENDPOINT`` and ``HF_HUB_CACHE`` as they are now
    (huggingface_hub reads them once, when it is imported), else its defaults."""
    return os.environ.get("HF_ENDPOINT") or None, os.environ.get("HF_HUB_CACHE") or None


def _remove_partial(hub, repo: str, etag: str | None, cache_dir: str | None) -> None:
    """Delete huggingface_hub's ``.incomplete`` blob of this download, if any."""
    from huggingface_hub.file_download import repo_folder_name

    if not etag:
        return
    folder = os.path.join(cache_dir or hub.constants.HF_HUB_CACHE,
                          repo_folder_name(repo_id=repo, repo_type="model"), "blobs")
    partial = os.path.join(folder, f"{etag}.incomplete")
    if os.path.exists(partial):
        os.remove(partial)


def verified_digest(path: str, name: str, expected: str | None = None) -> str:
    """SHA-256 of ``path``, checked against the hub's (``expected``, or the name of
    the cache blob, which huggingface_hub names by that digest)."""
    digest = sha256_of(path)
    expected = expected or os.path.basename(os.path.realpath(path))
    if _SHA256.match(expected) and digest != expected:
        _discard(path)
        raise ValueError(f"weights={name!r}: the downloaded file has SHA-256 {digest}, but "
                         f"the hub publishes {expected}: the file is corrupt and was removed "
                         "from the cache; retry")
    return digest


def _discard(path: str) -> None:
    """Remove a cached file: its blob and the snapshot link to it."""
    blob = os.path.realpath(path)
    for item in {blob, path}:
        if os.path.lexists(item):
            os.remove(item)


def download(name: str) -> tuple[str, str]:
    """Local path and SHA-256 of ``model.safetensors`` of the hub repository ``name``."""
    hub = _huggingface_hub(name)
    endpoint, cache_dir = _settings()
    cached = hub.try_to_load_from_cache(name, CHECKPOINT_FILE, cache_dir=cache_dir)
    if isinstance(cached, str):
        return cached, verified_digest(cached, name)
    url = hub.hf_hub_url(name, CHECKPOINT_FILE, endpoint=endpoint)
    try:
        meta = hub.get_hf_file_metadata(url, timeout=METADATA_TIMEOUT)
    except _not_found_errors() as err:
        raise ValueError(f"weights={name!r}: the hub has no {CHECKPOINT_FILE} for {name} "
                         f"({type(err).__name__}); keras_resnet.list_weights() lists known "
                         "names") from None
    except Exception as err:  # no network: httpx / socket errors, proxies, timeouts
        raise OSError(f"weights={name!r}: cannot reach the Hugging Face hub "
                      f"({type(err).__name__}). {offline_help(name, url)}") from None
    try:
        path = hub.hf_hub_download(name, CHECKPOINT_FILE, endpoint=endpoint, cache_dir=cache_dir)
    except BaseException as err:
        _remove_partial(hub, name, meta.etag, cache_dir)
        if not isinstance(err, Exception):
            raise
        raise OSError(f"weights={name!r}: download failed ({type(err).__name__}: {err}). "
                      f"{offline_help(name, url)}") from None
    digest = verified_digest(path, name, meta.etag)
    try:  # optional: the tensors alone say the architecture; it adds mean and std
        hub.hf_hub_download(name, CONFIG_FILE, endpoint=endpoint, cache_dir=cache_dir)
    except _not_found_errors():
        pass
    return path, digest
