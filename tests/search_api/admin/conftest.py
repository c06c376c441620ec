"""Fixtures of the admin page's browser tests: the real app on a real WSGI server, real store,
real Redis, the test model, a worker draining the queue in the background, and Chromium.

Chromium is Debian's (``/usr/bin/chromium``): Playwright cannot download its own browser here.
Without it the tests fail (inside the test, not as a skip) saying how to install it.
"""

from __future__ import annotations

import io
import logging
import re
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import (
    Browser,
    FilePayload,
    Page,
    Playwright,
    ViewportSize,
    sync_playwright,
)
from werkzeug.serving import BaseWSGIServer, make_server

from ingest.ingestion.bulk import BulkIngestor, catalog_sources
from ingest.models.runtime import load_runtime
from schemas.settings import AdminSettings, ApiRole, Settings
from search_api.web.app import create_app
from search_api.web.services import Services
from tests.ingest.catalog_samples import CATALOG_FIELDS, catalog_row, write_catalog, write_csv
from tests.search_api.conftest import KEYS, InProcessWorker

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[3]
ARTIFACTS = REPO / "test-artifacts" / "admin"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ADMIN_KEY = KEYS[ApiRole.ADMIN]
SEARCH_KEY = KEYS[ApiRole.SEARCH]
DESKTOP: ViewportSize = {"width": 1280, "height": 900}
PHONE: ViewportSize = {"width": 390, "height": 844}
TIMEOUT_MS = 15_000
# Small pages, so that paging (offsets and group cursors) shows on a 15-image catalog.
PAGE_SIZE = 5


class _Chromium:
    """One browser for the session, launched when a test first needs it."""

    def __init__(self) -> None:
        self._playwright: Playwright | None = None
        self._browser: Browser | None = None

    def browser(self) -> Browser:
        if self._browser is None:
            if not CHROMIUM.exists():
                pytest.fail(
                    f"Chromium is not installed at {CHROMIUM}: the admin page's browser tests "
                    "need it. Install it with `apt-get install chromium` (or `make browser`).",
                    pytrace=False,
                )
            self._playwright = sync_playwright().start()
            self._browser = self._playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
            )
        return self._browser

    def close(self) -> None:
        if self._browser is not None:
            self._browser.close()
        if self._playwright is not None:
            self._playwright.stop()


@pytest.fixture(scope="session")
def chromium() -> Iterator[_Chromium]:
    """Chromium, shared by every test (each test gets its own context: cookies, storage)."""
    holder = _Chromium()
    yield holder
    holder.close()


@pytest.fixture
def admin_settings(api_settings: Settings) -> Settings:
    """The API test settings (a key per role) with small result pages."""
    return api_settings.model_copy(update={"admin": AdminSettings(page_size=PAGE_SIZE)})


@pytest.fixture
def admin_services(admin_settings: Settings) -> Iterator[Services]:
    """Services opening their own store, Redis and thumbnails, as the server would."""
    services = Services(admin_settings)
    yield services
    services.close()


def _resized(data: bytes, factor: float) -> bytes:
    image = Image.open(io.BytesIO(data)).convert("RGB")
    out = io.BytesIO()
    image.resize((int(image.width * factor), int(image.height * factor))).save(out, "PNG")
    return out.getvalue()


@dataclass
class Catalog:
    """The 12-item test catalog plus near-duplicates of sku-05, ingested with thumbnails."""

    root: Path
    images: Path

    def image(self, index: int) -> bytes:
        """Bytes of catalog row ``index``'s image."""
        return (self.images / catalog_row(index)["image"]).read_bytes()


@pytest.fixture
def admin_catalog(admin_services: Services, tmp_path: Path) -> Catalog:
    """Catalog rows sku-00..sku-11, and copy-05 (same bytes) and half-05 (half size)."""
    settings = admin_services.settings
    csv_path, images = write_catalog(tmp_path / "catalog")
    original = images / catalog_row(5)["image"]
    (images / "copy-05.jpg").write_bytes(original.read_bytes())
    (images / "half-05.png").write_bytes(_resized(original.read_bytes(), 0.5))
    twin = {key: value for key, value in catalog_row(5).items()}
    extra = [
        {**twin, "item_id": "copy-05", "image": "copy-05.jpg"},
        {**twin, "item_id": "half-05", "image": "half-05.png"},
    ]
    extra_csv = write_csv(tmp_path / "catalog" / "extra.csv", extra, CATALOG_FIELDS)
    runtime = load_runtime(settings, settings.default_model)
    ingestor = BulkIngestor(
        admin_services.store, [runtime], settings.images, thumbnails=admin_services.thumbnails
    )
    for path in (csv_path, extra_csv):
        summary = ingestor.run(catalog_sources(path, images), progress=False)
        assert summary.failed == 0, summary
    return Catalog(tmp_path / "catalog", images)


class LiveWorker:
    """Drains the queue in a background thread, like a worker process would."""

    def __init__(self, worker: InProcessWorker) -> None:
        self.worker = worker
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="admin-test-worker", daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.worker.run()
            except Exception:  # keep draining; the test sees the effect (or its absence)
                log.exception("in-process worker failed")
            self._stop.wait(0.1)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


@pytest.fixture
def live_worker(admin_services: Services) -> Iterator[LiveWorker]:
    """A worker taking queued events (uploads, deletes, duplicate jobs) as they come."""
    live = LiveWorker(InProcessWorker(admin_services))
    live.start()
    yield live
    live.stop()


@pytest.fixture
def server(
    admin_services: Services, admin_catalog: Catalog, live_worker: LiveWorker
) -> Iterator[str]:
    """The app served by werkzeug's threaded WSGI server on 127.0.0.1; yields its base URL."""
    app = create_app(services=admin_services)
    wsgi: BaseWSGIServer = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=wsgi.serve_forever, name="admin-test-server", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{wsgi.server_port}"
    wsgi.shutdown()
    thread.join(timeout=30)


class AdminBrowser:
    """A browser context on the live server, with sign-in and screenshot helpers."""

    def __init__(self, chromium: _Chromium, base_url: str) -> None:
        self._chromium = chromium
        self.base_url = base_url
        self._page: Page | None = None
        self.viewport = DESKTOP

    @property
    def page(self) -> Page:
        """The page (opening the browser context on first use)."""
        if self._page is None:
            context = self._chromium.browser().new_context(
                base_url=self.base_url, viewport=self.viewport
            )
            context.set_default_timeout(TIMEOUT_MS)
            self._page = context.new_page()
            # Destructive actions ask for confirmation: the tests confirm.
            self._page.on("dialog", lambda dialog: dialog.accept())
        return self._page

    def goto(self, path: str) -> Page:
        """Open an admin path and wait for it."""
        self.page.goto(path)
        return self.page

    def sign_in(self, key: str = ADMIN_KEY, *, then: str = "/admin/") -> Page:
        """Sign in with a key through the form."""
        page = self.goto(f"/admin/sign-in?next={then}")
        page.get_by_label("Admin key").fill(key)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_load_state()
        return page

    def screenshot(self, name: str) -> Path:
        """Keep a full-page screenshot as a test artefact."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def close(self) -> None:
        if self._page is not None:
            self._page.context.close()


@pytest.fixture
def admin(chromium: _Chromium, server: str) -> Iterator[AdminBrowser]:
    """A fresh browser context (no cookies) on the live admin page."""
    browser = AdminBrowser(chromium, server)
    yield browser
    browser.close()


def hide_model(settings: Settings) -> Path:
    """Move the default model's files away (uploads fail with model_unavailable); returns where."""
    source = settings.models_dir / settings.default_model
    hidden = settings.models_dir.parent / "hidden-model"
    shutil.move(source, hidden)
    return hidden


def restore_model(settings: Settings, hidden: Path) -> None:
    """Put the model's files back."""
    shutil.move(hidden, settings.models_dir / settings.default_model)


def item_ids(page: Page) -> list[str]:
    """Item ids of the result cards, in order."""
    return page.locator("#results .item-link").all_inner_texts()


def no_stack_trace(page: Page) -> None:
    """Errors are sentences, never a traceback."""
    text = page.content()
    assert "Traceback" not in text
    assert not re.search(r'File ".*", line \d+', text)


def upload(name: str, mime_type: str, data: bytes) -> FilePayload:
    """A file for a file input, from memory."""
    return {"name": name, "mimeType": mime_type, "buffer": data}
