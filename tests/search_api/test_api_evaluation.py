"""GET /api/v1/models/{id}/evaluation: a model's last `lookalike evaluate`, as JSON."""

from __future__ import annotations

from flask.testing import FlaskClient

from ingest.evaluation.datasets import catalog_images
from ingest.evaluation.report import evaluation_record, save_last
from ingest.evaluation.run import evaluate_model
from ingest.models.registry import ModelRegistry
from schemas.evaluation import EvaluationRecord
from schemas.settings import Settings
from tests.search_api.conftest import Catalog, error_of
from tests.support import TEST_MODEL_ID


def test_a_models_last_evaluation_is_served_and_missing_ones_are_404(
    client: FlaskClient, api_settings: Settings, catalog: Catalog
) -> None:
    path = f"/api/v1/models/{TEST_MODEL_ID}/evaluation"
    error = error_of(client.get(path), 404, "evaluation_not_found")
    assert "lookalike evaluate" in error["message"]
    error_of(client.get("/api/v1/models/no-such-model/evaluation"), 404, "model_not_found")
    error_of(client.get("/api/v1/models/Not%20An%20Id/evaluation"), 404, "model_not_found")
    assert client.get("/api/v1/models/..%2F..%2Fetc/evaluation").status_code == 404

    registry = ModelRegistry(api_settings.models_dir)
    csv_path = catalog.images.parent / "catalog.csv"
    labelled = catalog_images(csv_path, catalog.images, label_column="product_id")
    evaluation = evaluate_model(
        api_settings, registry.manifest(TEST_MODEL_ID), labelled, progress=False
    )
    record = evaluation_record(evaluation, source=str(csv_path))
    save_last(registry, evaluation, record)

    response = client.get(path)
    assert response.status_code == 200, response.get_data(as_text=True)
    served = EvaluationRecord.model_validate(response.get_json())
    assert served == record
