"""Property-based run of the whole API from its own OpenAPI document (schemathesis, WSGI).

Every documented operation gets generated requests, valid (positive) and invalid (negative),
sent with an admin key to the real app, store, model and Redis: no response may be a 5xx, and
every response must match the schema documented for its status code.

Hypothesis strategies are built per operation with ``APIOperation.as_strategy`` rather than
``schemathesis.pytest.from_fixture``: the latter sets ``request.node._nodeid``, which pytest
9.2 no longer has.
"""

from __future__ import annotations

from typing import Any

import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import response_schema_conformance

from schemas.settings import ApiRole
from tests.search_api.conftest import Catalog, auth

Operation = schemathesis.APIOperation[Any, Any, Any, Any]

# Per operation and phase (examples, positive, negative): 30 operations take about half a
# minute on two cores.
MAX_EXAMPLES = 40
HEADERS = auth(ApiRole.ADMIN)
EXPECTED_OPERATIONS = 35  # a new endpoint must show up in the document (and here)


def _exercise(operation: Operation, mode: GenerationMode | None) -> None:
    """Run generated cases: from the documented examples (mode None), or positive/negative."""
    if mode is None:
        examples = operation.get_strategies_from_examples(fill_missing=True)
        if not examples:
            return
        strategy = st.one_of(examples)
    else:
        strategy = operation.as_strategy(generation_mode=mode)

    @given(case=strategy)
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: schemathesis.Case[Any]) -> None:
        case.call_and_validate(
            headers=HEADERS, checks=[not_a_server_error, response_schema_conformance]
        )

    run()


def test_api_answers_generated_requests_without_5xx_and_as_documented(
    app: Flask, catalog: Catalog
) -> None:
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    operations = []
    failures: list[str] = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        operation = result.ok()
        operations.append(operation.label)
        for mode in (None, GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                _exercise(operation, mode)
            except Unsatisfiable:
                # Nothing to make invalid (no parameters, no body): positive mode covers it.
                assert mode is GenerationMode.NEGATIVE, operation.label
            except Exception as error:  # collected: report every failing operation at once
                failures.append(f"{operation.label} [{mode or 'examples'}]: {error}")
    assert len(operations) == EXPECTED_OPERATIONS, operations
    assert not failures, "\n\n".join(failures)
