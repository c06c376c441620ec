"""The search page's Export button: the current model's points under the current filters, as a
file the browser downloads (Chromium on the live app), and the route behind it."""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from playwright.sync_api import Page, expect

from ingest.store.base import scroll_pages
from schemas.points import MatchCondition, PayloadFilter
from schemas.settings import Settings
from search_api.web.services import Services
from tests.search_api.admin.conftest import AdminBrowser, no_stack_trace
from tests.search_api.conftest import closing_app

ACME = PayloadFilter(must=[MatchCondition(key="brand", value="acme")])


def stored_ids(services: Services, filter: PayloadFilter | None = None) -> list[str]:
    """The ids of the store's points in scroll order (the order exports write)."""
    model_id = services.settings.default_model
    pages = scroll_pages(services.store, model_id, page_size=50, filter=filter)
    return [point.id for page in pages for point in page]


def download(page: Page, tmp_path: Path, name: str) -> Path:
    """Click Export and keep the file the browser downloads."""
    with page.expect_download() as started:
        page.get_by_role("button", name="Export").click()
    target = tmp_path / name
    started.value.save_as(target)
    assert started.value.suggested_filename == name
    return target


def test_export_downloads_the_filtered_points(
    admin: AdminBrowser, admin_services: Services, tmp_path: Path
) -> None:
    model_id = admin_services.settings.default_model
    page = admin.sign_in()
    brands = page.locator("fieldset.facet", has_text="Brand")
    brands.get_by_text(re.compile(r"^acme")).click()
    expect(page).to_have_url(re.compile(r"f\.brand=acme"))
    export = page.locator("form.export-form")
    expect(export).to_contain_text("matching these filters")
    expect(export.get_by_label("Format")).to_have_value("jsonl")
    admin.screenshot("search-export")

    jsonl = download(page, tmp_path, f"{model_id}.jsonl")
    rows: list[dict[str, Any]] = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [row["id"] for row in rows] == stored_ids(admin_services, ACME)
    assert {row["payload"]["brand"] for row in rows} == {"acme"}
    assert {len(row["vector"]) for row in rows} == {
        admin_services.registry.spec(model_id).dimension
    }

    export.get_by_label("Format").select_option("npy")
    archive = zipfile.ZipFile(download(page, tmp_path, f"{model_id}.npy.zip"))
    matrix = np.load(io.BytesIO(archive.read(f"{model_id}.npy")))
    sidecar = archive.read(f"{model_id}.ids.jsonl").decode().splitlines()
    assert matrix.shape[0] == len(sidecar) == len(rows)
    assert np.allclose(matrix, np.asarray([row["vector"] for row in rows], dtype=np.float32))
    # Downloading leaves the page as it was.
    expect(page).to_have_url(re.compile(r"f\.brand=acme"))
    no_stack_trace(page)


def test_without_filters_every_point_is_exported(
    admin: AdminBrowser, admin_services: Services, tmp_path: Path
) -> None:
    model_id = admin_services.settings.default_model
    page = admin.sign_in()
    expect(page.locator("form.export-form")).not_to_contain_text("matching these filters")
    jsonl = download(page, tmp_path, f"{model_id}.jsonl")
    ids = [json.loads(line)["id"] for line in jsonl.read_text().splitlines()]
    assert ids == stored_ids(admin_services)
    assert len(ids) == 14


def test_the_route_needs_a_sign_in(api_settings: Settings) -> None:
    with closing_app(Services(api_settings)) as app:
        response = app.test_client().get("/admin/export?format=jsonl")
    assert response.status_code == 302
    assert "/admin/sign-in?next=/admin/export" in response.headers["Location"]


def test_refusals_are_readable_pages(settings: Settings) -> None:
    # Open mode (no key configured): no sign-in needed; the store has no collection yet.
    with closing_app(Services(settings)) as app:
        client = app.test_client()
        unknown = client.get("/admin/export?format=csv")
        empty = client.get("/admin/export?format=jsonl")
    assert unknown.status_code == 422
    text = unknown.get_data(as_text=True)
    assert "Unknown export format &#39;csv&#39;: choose jsonl, npy, parquet." in text
    assert "Traceback" not in text
    assert empty.status_code == 404
    assert "Nothing ingested yet" in empty.get_data(as_text=True)
