"""GET /api/v1/collections/<model>/export: the test catalog's embeddings as a download, for
the admin role only; read back and compared with the store's own scroll."""

from __future__ import annotations

import io
import json
import sys
import zipfile
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from flask.testing import FlaskClient

from ingest.store.base import VectorStore, scroll_pages
from schemas.points import MatchCondition, PayloadFilter
from schemas.settings import ApiRole
from tests.ingest.catalog_samples import CATALOG_SIZE
from tests.search_api.conftest import Catalog, auth, error_of
from tests.support import TEST_MODEL_ID

EXPORT = f"/api/v1/collections/{TEST_MODEL_ID}/export"
ACME = PayloadFilter(must=[MatchCondition(key="brand", value="acme")])


def stored(store: VectorStore, filter: PayloadFilter | None = None) -> list[dict[str, Any]]:
    """The store's points in scroll order, vectors as float32 values."""
    return [
        {
            "id": p.id,
            "item_id": p.item_id,
            "payload": p.payload,
            "vector": np.asarray(p.vector, dtype=np.float32).tolist(),
        }
        for page in scroll_pages(
            store, TEST_MODEL_ID, page_size=5, filter=filter, with_vectors=True
        )
        for p in page
    ]


def jsonl_rows(data: bytes) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in data.decode("utf-8").splitlines()]
    for row in rows:
        row["vector"] = np.asarray(row["vector"], dtype=np.float32).tolist()
    return rows


def test_jsonl_streams_every_point_as_an_attachment(
    client: FlaskClient, catalog: Catalog, store: VectorStore
) -> None:
    response = client.get(EXPORT)

    assert response.status_code == 200, response.get_data(as_text=True)
    # Streamed as read, so no length up front (a buffered body would have one).
    assert "Content-Length" not in response.headers
    assert response.mimetype == "application/x-ndjson"
    assert response.headers["Content-Disposition"] == (
        f'attachment; filename="{TEST_MODEL_ID}.jsonl"'
    )
    assert response.headers["Cache-Control"] == "no-store"
    rows = jsonl_rows(response.get_data())
    assert len(rows) == CATALOG_SIZE
    assert rows == stored(store)


def test_a_filter_selects_the_points_exported(
    client: FlaskClient, catalog: Catalog, store: VectorStore
) -> None:
    response = client.get(EXPORT, query_string={"filter": ACME.model_dump_json()})

    assert response.status_code == 200, response.get_data(as_text=True)
    rows = jsonl_rows(response.get_data())
    assert rows == stored(store, ACME)
    assert 0 < len(rows) < CATALOG_SIZE
    assert {row["payload"]["brand"] for row in rows} == {"acme"}


def test_npy_is_a_zip_of_the_matrix_and_its_sidecar(
    client: FlaskClient, catalog: Catalog, store: VectorStore
) -> None:
    response = client.get(EXPORT, query_string={"format": "npy", "filter": ACME.model_dump_json()})

    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "application/zip"
    assert response.headers["Content-Disposition"] == (
        f'attachment; filename="{TEST_MODEL_ID}.npy.zip"'
    )
    assert response.headers["Content-Length"] == str(len(response.get_data()))
    archive = zipfile.ZipFile(io.BytesIO(response.get_data()))
    assert archive.namelist() == [f"{TEST_MODEL_ID}.npy", f"{TEST_MODEL_ID}.ids.jsonl"]
    matrix = np.load(io.BytesIO(archive.read(f"{TEST_MODEL_ID}.npy")))
    sidecar = archive.read(f"{TEST_MODEL_ID}.ids.jsonl").decode().splitlines()
    rows = [{**json.loads(line), "vector": matrix[i].tolist()} for i, line in enumerate(sidecar)]
    assert matrix.dtype == np.float32
    assert rows == stored(store, ACME)


def test_parquet_reads_back_as_stored(
    client: FlaskClient, catalog: Catalog, store: VectorStore
) -> None:
    response = client.get(EXPORT, query_string={"format": "parquet"})

    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "application/vnd.apache.parquet"
    table = pq.read_table(io.BytesIO(response.get_data()))
    rows = [{**row, "payload": json.loads(row["payload"])} for row in table.to_pylist()]
    assert rows == stored(store)


@pytest.mark.parametrize("role", [ApiRole.SEARCH, ApiRole.INGEST])
def test_only_the_admin_role_may_export(
    anonymous: FlaskClient, catalog: Catalog, role: ApiRole
) -> None:
    error = error_of(anonymous.get(EXPORT, headers=auth(role)), 403, "forbidden")
    assert error["details"]["required_role"] == "admin"
    error_of(anonymous.get(EXPORT), 401, "unauthorized")
    assert anonymous.get(EXPORT, headers=auth(ApiRole.ADMIN)).status_code == 200


def test_an_unknown_model_is_a_404(client: FlaskClient, catalog: Catalog) -> None:
    error_of(client.get("/api/v1/collections/no-such-model/export"), 404, "model_not_found")
    error_of(client.get("/api/v1/collections/Not%20A%20Model/export"), 404, "model_not_found")


@pytest.mark.parametrize(
    "query",
    [{"format": "csv"}, {"filter": "brand=acme"}, {"filter": '{"must": [{"kind": "nope"}]}'}],
    ids=["unknown format", "filter not JSON", "not a filter"],
)
def test_bad_parameters_are_a_422(
    client: FlaskClient, catalog: Catalog, query: dict[str, str]
) -> None:
    error_of(client.get(EXPORT, query_string=query), 422, "validation_error")


def test_parquet_without_pyarrow_is_a_503_naming_the_extra(
    client: FlaskClient, catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    response = client.get(EXPORT, query_string={"format": "parquet"})
    error = error_of(response, 503, "format_unavailable")
    assert "pip install 'lookalike[parquet]'" in error["message"]


def test_the_document_names_the_three_media_types(anonymous: FlaskClient) -> None:
    spec = anonymous.get("/api/v1/openapi.json").get_json()
    operation = spec["paths"]["/api/v1/collections/{model_id}/export"]["get"]
    assert set(operation["responses"]["200"]["content"]) == {
        "application/x-ndjson",
        "application/zip",
        "application/vnd.apache.parquet",
    }
    assert {p["name"] for p in operation["parameters"]} >= {"model_id", "format", "filter"}
