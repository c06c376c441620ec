"""`lookalike search` and `lookalike collections`."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from ingest.errors import ModelNotFound
from ingest.ingestion.bulk import parse_cell
from ingest.models.registry import ModelRegistry
from ingest.store.current import current_model_id, open_store
from schemas.points import (
    AnyOfCondition,
    Condition,
    MatchCondition,
    PayloadFilter,
    RangeCondition,
    ScoredPoint,
)
from schemas.queries import SimilarityQuery
from search_api.cli.common import friendly_errors, settings_of, warn_if_random
from search_api.queries.similar import run_query

_FILTER = re.compile(r"^(?P<key>[A-Za-z_][\w.-]*)\s*(?P<op><=|>=|<|>|=)\s*(?P<value>.*)$")


def parse_filters(expressions: Sequence[str]) -> PayloadFilter | None:
    """``key=value`` (repeat a key for any-of), ``key<=number``, ``key>number`` ..."""

    matches: dict[str, list[Any]] = {}
    conditions: list[Condition] = []
    for expression in expressions:
        found = _FILTER.match(expression)
        if not found:
            raise click.BadParameter(
                f"{expression!r}: expected key=value, key<=number or key>=number",
                param_hint="--filter",
            )
        key, op, raw = found["key"], found["op"], found["value"].strip()
        value = parse_cell(raw)
        if op == "=":
            matches.setdefault(key, []).append(value)
            continue
        if isinstance(value, str):
            raise click.BadParameter(f"{expression!r}: {op} needs a number", param_hint="--filter")
        bound = {"<": "lt", "<=": "lte", ">": "gt", ">=": "gte"}[op]
        conditions.append(RangeCondition(key=key, **{bound: float(value)}))
    for key, values in matches.items():
        if len(values) == 1 and isinstance(values[0], float):
            # Exact matches take keywords and integers only: a decimal is a one-point range.
            conditions.append(RangeCondition(key=key, gte=values[0], lte=values[0]))
        elif len(values) == 1:
            conditions.append(MatchCondition(key=key, value=values[0]))
        else:
            conditions.append(AnyOfCondition(key=key, values=values))
    return PayloadFilter(must=conditions) if conditions else None


def _print_hits(hits: Sequence[ScoredPoint], as_json: bool, shown_fields: Sequence[str]) -> None:
    if as_json:
        click.echo(json.dumps([hit.model_dump() for hit in hits], indent=2, default=str))
        return
    if not hits:
        click.echo("no results")
    for rank, hit in enumerate(hits, start=1):
        extra = "  ".join(f"{key}={hit.payload[key]}" for key in shown_fields if key in hit.payload)
        click.echo(f"{rank:>3}. {hit.score:.4f}  {hit.item_id:<32} {extra}")


@click.command()
@click.option("--image", "image_path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--item", "item_id", help="Search with a stored item's image (no re-embedding).")
@click.option("--filter", "filters", multiple=True, help="key=value, key<=number, key>=number.")
@click.option("--limit", type=click.IntRange(1, 1000), default=10, show_default=True)
@click.option("--group-by", help="One result per value of this payload field (e.g. brand).")
@click.option("--model", "model_id", help="Model whose collection to search (default: current).")
@click.option("--threshold", type=float, help="Only results scoring at least this.")
@click.option("--json", "as_json", is_flag=True, help="Print results as JSON.")
@click.pass_context
@friendly_errors
def search(
    ctx: click.Context,
    image_path: Path | None,
    item_id: str | None,
    filters: Sequence[str],
    limit: int,
    group_by: str | None,
    model_id: str | None,
    threshold: float | None,
    as_json: bool,
) -> None:
    """Rank stored images by similarity to an image file or a stored item."""

    if (image_path is None) == (item_id is None):
        raise click.UsageError("give either --image FILE or --item ID")
    settings = settings_of(ctx)
    filter_ = parse_filters(filters)
    store = open_store(settings)
    try:
        query = SimilarityQuery(
            model_id=model_id or current_model_id(settings, store),
            item_id=item_id,
            filter=filter_,
            limit=limit,
            group_by=group_by,
            score_threshold=threshold,
        )
        with contextlib.suppress(ModelNotFound):  # --item searches need no local model file
            warn_if_random(ModelRegistry(settings.models_dir).manifest(query.model_id))
        hits = run_query(
            settings, store, query, image=image_path.read_bytes() if image_path else None
        )
    finally:
        store.close()
    _print_hits(hits, as_json, shown_fields=("brand", "category", "price", group_by or ""))


@click.command()
@click.pass_context
@friendly_errors
def collections(ctx: click.Context) -> None:
    """Collections in the store: model, dimension, points, search mode (exact, indexing or
    indexed), current or not, fingerprint."""

    store = open_store(settings_of(ctx))
    try:
        infos = store.collections()
    finally:
        store.close()
    if not infos:
        click.echo("no collections yet: run `lookalike ingest`")
    for info in infos:
        current = "current  " if info.current else ""
        click.echo(
            f"{info.name:<40}{info.dimension:>6}-d {info.points:>9} points  "
            f"{info.index:<9}{current}{info.model_fingerprint}"
        )
