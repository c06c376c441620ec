"""Export: the search page's model and filters as a download of embeddings (jsonl, npy,
parquet), through the same code as the API's ``/collections/<model>/export``."""

from __future__ import annotations

from flask import request

from ingest.errors import ExtraNotInstalled
from ingest.vector_export.plan import plan_export
from ingest.vector_export.run import check_format_available
from schemas.exports import ExportFormat
from search_api.admin.blueprint import bp, chosen_model, services
from search_api.admin.state import SearchState
from search_api.web.downloads import Download, export_download
from search_api.web.errors import ApiError, query_errors


def _format(raw: str | None) -> ExportFormat:
    try:
        fmt = ExportFormat(raw or ExportFormat.JSONL.value)
    except ValueError:
        names = ", ".join(choice.value for choice in ExportFormat)
        raise ApiError(
            422, "validation_error", f"Unknown export format {raw!r:.40}: choose {names}."
        ) from None
    try:
        check_format_available(fmt)
    except ExtraNotInstalled as error:
        raise ApiError(503, "format_unavailable", f"{error}.") from error
    return fmt


@bp.get("/export")
def export() -> Download:
    """Download the points of a model under the page's filters (query and grouping aside)."""
    svc = services()
    model_id = chosen_model(request.args.get("model"))
    state = SearchState.parse(request.args, model_id, svc.settings.admin)
    fmt = _format(request.args.get("format"))
    with query_errors():
        plan = plan_export(svc.store, model_id, state.payload_filter())
    return export_download(svc.store, plan, fmt)
