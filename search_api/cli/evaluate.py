"""`lookalike evaluate`: how well each model finds similar and duplicate images, side by side."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import click

from ingest.evaluation.datasets import (
    DEFAULT_QUERY_FRACTION,
    DEFAULT_SEED,
    LabelledImage,
    catalog_images,
    folder_images,
)
from ingest.evaluation.report import evaluation_record, save_last, table, write_picture
from ingest.evaluation.run import DEFAULT_KS, ModelEvaluation, evaluate_model
from ingest.models.registry import ModelRegistry
from search_api.cli.common import folder_or_catalog, friendly_errors, settings_of, warn_if_random


@click.command()
@folder_or_catalog("A catalog CSV with a label column instead of a folder.")
@click.option("--label", "label_column", help="The catalog column naming what matches.")
@click.option(
    "--model", "model_ids", multiple=True, help="Model(s) to evaluate (default: the default)."
)
@click.option(
    "-k", "ks", multiple=True, type=click.IntRange(min=1), help="Cut-offs (default: 1, 5, 10)."
)
@click.option("--tta", is_flag=True, help="Also with horizontal-flip test-time augmentation.")
@click.option(
    "--query-fraction",
    type=click.FloatRange(0.01, 0.99),
    default=DEFAULT_QUERY_FRACTION,
    show_default=True,
    help="Class-per-folder layout: the share of each class used as queries.",
)
@click.option("--seed", type=int, default=DEFAULT_SEED, show_default=True, help="Of that split.")
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the numbers as JSON here.",
)
@click.option(
    "--picture",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Draw the precision-recall curves and score histograms here (.png or .svg).",
)
@click.option(
    "--apply", is_flag=True, help="Record each model's calibrated threshold in its manifest."
)
@click.option("--progress/--no-progress", default=True)
@click.pass_context
@friendly_errors
def evaluate(
    ctx: click.Context,
    folder: Path | None,
    catalog: Path | None,
    images: Path | None,
    label_column: str | None,
    id_column: str,
    image_column: str,
    model_ids: Sequence[str],
    ks: Sequence[int],
    tta: bool,
    query_fraction: float,
    seed: int,
    json_path: Path | None,
    picture: Path | None,
    apply: bool,
    progress: bool,
) -> None:
    """mAP@k, P@k, top-k accuracy and near-duplicate precision/recall, in a store of its own.

    FOLDER holds query/ and gallery/ with a subfolder per class, or a subfolder per class
    (split by --seed); or give --catalog CSV --label COLUMN. Each model's last evaluation is
    kept next to its manifest (the API and the admin page's Quality view show it).
    """
    settings = settings_of(ctx)
    labelled = _inputs(
        folder,
        catalog,
        images,
        label_column,
        id_column,
        image_column,
        query_fraction=query_fraction,
        seed=seed,
    )
    source = str(catalog or folder)
    registry = ModelRegistry(settings.models_dir)
    evaluations: list[ModelEvaluation] = []
    records = []
    for model_id in model_ids or [settings.default_model]:
        manifest = registry.manifest(model_id)
        warn_if_random(manifest)
        for flip in (False, True) if tta else (False,):
            evaluation = evaluate_model(
                settings, manifest, labelled, ks=ks or DEFAULT_KS, tta=flip, progress=progress
            )
            evaluations.append(evaluation)
            records.append(evaluation_record(evaluation, source=source))
            if not flip:  # the plain run is the one kept, and calibrated from
                save_last(registry, evaluation, records[-1])
                if apply:
                    _apply(registry, model_id, evaluation)
    click.echo(table(evaluations))
    _report_failures(evaluations)
    if json_path is not None:
        json_path.write_text(json.dumps([r.model_dump(mode="json") for r in records], indent=2))
        click.echo(f"numbers: {json_path}")
    if picture is not None:
        click.echo(f"picture: {write_picture(evaluations, picture)}")


def _inputs(
    folder: Path | None,
    catalog: Path | None,
    images: Path | None,
    label_column: str | None,
    id_column: str,
    image_column: str,
    *,
    query_fraction: float,
    seed: int,
) -> list[LabelledImage]:
    if (folder is None) == (catalog is None):
        raise click.UsageError("give either a FOLDER or --catalog CSV --label COLUMN")
    if catalog is not None:
        if label_column is None:
            raise click.UsageError("--catalog needs --label COLUMN: the column naming what matches")
        return catalog_images(
            catalog,
            images or catalog.parent,
            label_column=label_column,
            id_column=id_column,
            image_column=image_column,
        )
    assert folder is not None  # noqa: S101 (checked above)
    return folder_images(folder, query_fraction=query_fraction, seed=seed)


def _apply(registry: ModelRegistry, model_id: str, evaluation: ModelEvaluation) -> None:
    calibrated = round(evaluation.duplicates.calibrated_threshold, 4)
    registry.set_calibrated_threshold(model_id, calibrated)
    was = evaluation.duplicates.threshold
    click.echo(f"{model_id}: duplicate threshold set to {calibrated} (was {was})")


def _report_failures(evaluations: Sequence[ModelEvaluation]) -> None:
    failures = evaluations[0].failures if evaluations else []
    for failure in failures:
        click.echo(f"  not evaluated {failure.item_id or '-'} [{failure.reason}] {failure.message}")
