"""Uploads through the admin page's form, answered per file as the API answers them: the good
files queued and indexed, the bad ones listed with their reasons, and files that would share an
item id kept apart by their suffixes. Chromium drives the real app, store, Redis and worker.
"""

from __future__ import annotations

import hashlib
import re

from playwright.sync_api import expect

from search_api.web.services import Services
from tests.search_api.admin.conftest import AdminBrowser, Catalog, no_stack_trace, upload
from tests.support import TEST_MODEL_ID

POINTS = f'[data-collection-points="{TEST_MODEL_ID}"]'
CATALOG_POINTS = 14  # sku-00..sku-11, copy-05 and half-05


def test_a_bad_file_is_refused_with_its_reason_and_the_good_one_is_indexed(
    admin: AdminBrowser, admin_catalog: Catalog, admin_services: Services
) -> None:
    good = admin_catalog.image(9)
    cut_short = admin_catalog.image(1)[:2000]  # a JPEG whose data ends mid-picture
    page = admin.sign_in(then="/admin/ingestion")
    page.get_by_label("Images", exact=True).set_input_files(
        [upload("fresh.jpg", "image/jpeg", good), upload("broken.jpg", "image/jpeg", cut_short)]
    )
    page.get_by_role("button", name="Upload and queue").click()

    expect(page).to_have_url(re.compile(r"/admin/ingestion/batches/"))
    expect(page.get_by_role("status").first).to_contain_text("1 image(s) queued, 1 refused")
    expect(page.get_by_role("heading", name="Upload of 2 images")).to_be_visible()
    refused = page.locator("#refused [data-refused]")
    expect(refused).to_have_count(1)
    expect(refused).to_contain_text("broken.jpg")
    expect(refused.locator("[data-reason]")).to_have_text("truncated")
    expect(refused).to_contain_text("Not an image we can read")
    queued = page.locator("[data-event]")
    expect(queued).to_have_count(1)
    expect(queued.locator(".item-link")).to_have_text("fresh")
    expect(queued.locator("[data-status]")).to_have_text("done")
    no_stack_trace(page)
    admin.screenshot("upload-partly-refused")

    # The batch keeps its refusals: a reload (or the link, later) still says why.
    page.reload()
    expect(page.locator("#refused [data-refused]")).to_contain_text("broken.jpg")
    # Nothing of the refused file reached the blob store.
    broken_blob = f"blob://{hashlib.sha256(cut_short).hexdigest()}"
    assert not admin_services.blobs.path_for(broken_blob).exists()
    admin.goto("/admin/ingestion")
    expect(page.locator(POINTS)).to_have_text(str(CATALOG_POINTS + 1))
    admin.goto("/admin/items/fresh")
    expect(page.get_by_role("heading", name="Item fresh")).to_be_visible()


def test_photo_jpg_and_photo_png_together_are_two_items_with_a_note(
    admin: AdminBrowser, admin_catalog: Catalog
) -> None:
    page = admin.sign_in(then="/admin/ingestion")
    page.get_by_label("Images", exact=True).set_input_files(
        [
            upload("photo.jpg", "image/jpeg", admin_catalog.image(1)),
            upload("photo.png", "image/png", admin_catalog.image(3)),
        ]
    )
    page.get_by_role("button", name="Upload and queue").click()

    expect(page).to_have_url(re.compile(r"/admin/ingestion/batches/"))
    notes = page.locator("#batch-notes")
    expect(notes).to_contain_text("photo.jpg is item 'photo.jpg', not 'photo'")
    expect(notes).to_contain_text("photo.png is item 'photo.png', not 'photo'")
    expect(page.locator("[data-event] .item-link")).to_have_text(["photo.jpg", "photo.png"])
    expect(page.locator("[data-event] [data-status]")).to_have_text(["done", "done"])
    expect(page.locator("#refused")).to_have_count(0)
    admin.screenshot("upload-suffixes-kept")

    admin.goto("/admin/ingestion")
    expect(page.locator(POINTS)).to_have_text(str(CATALOG_POINTS + 2))


def test_an_upload_of_only_bad_files_queues_nothing_and_names_each(
    admin: AdminBrowser, admin_catalog: Catalog
) -> None:
    page = admin.sign_in(then="/admin/ingestion")
    page.get_by_label("Images", exact=True).set_input_files(
        [
            upload("empty.png", "image/png", b""),
            upload("notes.jpg", "image/jpeg", b"shoot on Monday"),
        ]
    )
    page.get_by_role("button", name="Upload and queue").click()

    expect(page).to_have_url(re.compile(r"/admin/ingestion"))
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("Nothing was uploaded")
    expect(alert).to_contain_text("empty.png: Not an image we can read: the uploaded file is empty")
    expect(alert).to_contain_text("notes.jpg: Not an image we can read")
    expect(page.locator(POINTS)).to_have_text(str(CATALOG_POINTS))
