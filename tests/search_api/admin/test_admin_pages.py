"""The admin page in a real browser: Chromium driving the real app, store, Redis and model.

Each test signs in through the form, as an admin would, on its own catalog, Redis and store;
a worker drains the queue in the background. Screenshots of the main screens are kept under
``test-artifacts/admin/``.
"""

from __future__ import annotations

import base64
import re

from playwright.sync_api import Page, expect

from ingest.evaluation.datasets import catalog_images
from ingest.evaluation.report import evaluation_record, save_last
from ingest.evaluation.run import evaluate_model
from ingest.models.registry import ModelRegistry
from schemas.settings import Settings
from search_api.web.services import Services
from tests.search_api.admin.conftest import (
    PAGE_SIZE,
    PHONE,
    SEARCH_KEY,
    AdminBrowser,
    Catalog,
    hide_model,
    item_ids,
    no_stack_trace,
    restore_model,
    upload,
)


def test_sign_in_and_out(admin: AdminBrowser) -> None:
    page = admin.goto("/admin/ingestion")
    # Every page needs a sign-in; the sign-in page brings the admin back where they were.
    expect(page).to_have_url(re.compile(r"/admin/sign-in\?next=/admin/ingestion"))
    admin.screenshot("sign-in")
    page.get_by_label("Admin key").fill("admin-key-0123456789abc")
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/admin/ingestion$"))
    expect(page.get_by_role("heading", name="Ingestion", exact=True)).to_be_visible()
    expect(page.get_by_text("Signed in as")).to_contain_text("admin")

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/admin/sign-in"))
    admin.goto("/admin/")
    expect(page).to_have_url(re.compile(r"/admin/sign-in"))


def test_a_wrong_key_is_refused(admin: AdminBrowser) -> None:
    page = admin.sign_in("not-a-key-at-all-0000")
    expect(page.get_by_role("alert")).to_have_text("That key is not valid: check it and try again.")
    expect(page).to_have_url(re.compile(r"/admin/sign-in"))
    admin.screenshot("sign-in-refused")

    page = admin.sign_in(SEARCH_KEY)
    expect(page.get_by_role("alert")).to_contain_text("not admin")
    # Still signed out.
    admin.goto("/admin/duplicates")
    expect(page).to_have_url(re.compile(r"/admin/sign-in"))


def test_search_by_upload(admin: AdminBrowser, admin_catalog: Catalog) -> None:
    page = admin.sign_in()
    page.get_by_label("Query image", exact=True).set_input_files(
        upload("query.jpg", "image/jpeg", admin_catalog.image(3))
    )
    page.get_by_role("button", name="Search by image").click()

    expect(page).to_have_url(re.compile(r"image=[0-9a-f]{64}"))
    expect(page.get_by_role("heading", name="Like the uploaded image")).to_be_visible()
    first = page.locator("#results .card").first
    expect(first.locator(".item-link")).to_have_text("sku-03")
    assert float(first.locator(".score").inner_text()) > 0.99
    # Key metadata and a real thumbnail on every card.
    expect(first.locator(".fields")).to_contain_text("brand")
    expect(first.locator(".fields")).to_contain_text("price")
    expect(first.locator("img")).to_have_attribute("src", re.compile(r"/admin/thumbnails/"))
    assert first.locator("img").evaluate("img => img.naturalWidth") > 0
    expect(page.locator("#results .card")).to_have_count(PAGE_SIZE)
    admin.screenshot("search-by-image")

    # Paging keeps the query image (no upload again).
    page.get_by_role("link", name="Next page").click()
    expect(page).to_have_url(re.compile(r"page=2"))
    assert "sku-03" not in item_ids(page)

    # Dropping an image on the box searches with it too.
    payload = base64.b64encode(admin_catalog.image(7)).decode()
    page.evaluate(
        """([data]) => {
            const bytes = Uint8Array.from(atob(data), c => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], "dropped.jpg", {type: "image/jpeg"}));
            const zone = document.querySelector("[data-dropzone]");
            zone.dispatchEvent(new DragEvent("drop", {dataTransfer: transfer, bubbles: true}));
        }""",
        [payload],
    )
    expect(page.locator("#results .item-link").first).to_have_text("sku-07")


def test_filter_by_clicking_a_facet_value(admin: AdminBrowser) -> None:
    page = admin.sign_in(then="/admin/?item=sku-00")
    before = item_ids(page)
    brands = page.locator("fieldset.facet", has_text="Brand")
    # Counts next to each value.
    expect(brands.get_by_text(re.compile(r"^globex"))).to_contain_text(re.compile(r"\d+"))
    brands.get_by_text(re.compile(r"^globex")).click()

    expect(page).to_have_url(re.compile(r"f\.brand=globex"))
    after = item_ids(page)
    assert after
    assert after != before
    for text in page.locator("#results .fields").all_inner_texts():
        assert "globex" in text
    expect(brands.get_by_role("checkbox", name=re.compile("globex"))).to_be_checked()
    admin.screenshot("search-filtered")


def test_one_result_per_product_with_cursor_paging(admin: AdminBrowser) -> None:
    page = admin.sign_in(then="/admin/?item=sku-00")
    page.get_by_label("One result per").select_option("product_id")
    page.get_by_role("button", name="Apply filters").click()

    expect(page).to_have_url(re.compile(r"group=product_id"))
    first_page = page.locator("#results .group-key").all_inner_texts()
    assert len(first_page) == PAGE_SIZE
    assert len(set(first_page)) == len(first_page)
    admin.screenshot("search-grouped")

    page.get_by_role("link", name="Next page").click()
    expect(page).to_have_url(re.compile(r"cursor="))
    second_page = page.locator("#results .group-key").all_inner_texts()
    assert second_page
    assert not set(second_page) & set(first_page)
    # 12 catalog items in 6 products, plus copy-05 and half-05 in sku-05's product.
    assert len(first_page) + len(second_page) == 6


def test_open_an_item(admin: AdminBrowser) -> None:
    page = admin.sign_in(then="/admin/?item=copy-05")
    page.locator("#results .item-link", has_text="sku-05").click()

    expect(page.get_by_role("heading", name="Item sku-05")).to_be_visible()
    expect(page.get_by_role("img", name="Item sku-05")).to_be_visible()
    expect(page.locator("dl.payload").first).to_contain_text("brand")
    duplicates = page.locator("section", has=page.get_by_role("heading", name="Near-duplicates"))
    expect(duplicates.locator(".item-link")).to_have_text(["copy-05", "half-05"])
    neighbours = page.locator("section", has=page.get_by_role("heading", name="Nearest neighbours"))
    expect(neighbours.locator(".card")).to_have_count(12)
    admin.screenshot("item")


def test_review_and_dismiss_a_duplicate(admin: AdminBrowser) -> None:
    page = admin.sign_in(then="/admin/duplicates")
    expect(page.get_by_role("heading", name="No duplicate search yet")).to_be_visible()
    page.get_by_role("button", name="Start a duplicate search").click()

    # The page follows the job until the worker has finished it, then shows the groups.
    expect(page.get_by_role("heading", name="1 duplicate group")).to_be_visible()
    group = page.locator("[data-group]")
    expect(group.locator(".item-link")).to_have_count(3)
    admin.screenshot("duplicates")

    # The slider previews a stricter threshold on the stored scores.
    slider = page.get_by_label(re.compile("Preview a stricter threshold"))
    slider.fill("1")
    expect(page.locator("#preview-summary")).to_contain_text("At 1.000")
    slider.fill(slider.get_attribute("min") or "0")

    half = group.locator(".card.member", has_text="half-05")
    half.get_by_role("button", name="Not a duplicate").click()
    expect(half).to_have_count(0)
    page.reload()
    expect(page.locator("[data-group] .item-link")).to_have_count(2)
    expect(page.locator("[data-group]", has_text="half-05")).to_have_count(0)

    # "Delete this one" queues the item's removal; once applied the image shows as deleted.
    member = page.locator("[data-group] .card.member").first
    member_item = member.locator(".item-link").inner_text()
    member.get_by_role("button", name="Delete this one").click()
    expect(page.get_by_role("status").first).to_contain_text(f"Deletion of item {member_item!r}")
    # The worker applies it in the background; the stored group then shows it as deleted.
    deleted = page.locator(".card.deleted", has_text=member_item)
    for _ in range(50):
        if deleted.count():
            break
        page.wait_for_timeout(200)
        page.reload()
    expect(page.locator(".card.deleted", has_text=member_item)).to_have_count(1)


def test_retry_a_failed_upload(
    admin: AdminBrowser, admin_settings: Settings, admin_services: Services, admin_catalog: Catalog
) -> None:
    page = admin.sign_in(then="/admin/ingestion")
    hidden = hide_model(admin_settings)
    try:
        page.get_by_label("Images", exact=True).set_input_files(
            [
                upload("new-item.jpg", "image/jpeg", admin_catalog.image(9)),
            ]
        )
        page.get_by_role("button", name="Upload and queue").click()
        expect(page).to_have_url(re.compile(r"/admin/ingestion/batches/"))
        batch_url = page.url
        card = page.locator("[data-event]")
        expect(card.locator("[data-status]")).to_have_text("failed")
        expect(card.locator("[data-reason]")).to_contain_text("model_unavailable")
        admin.screenshot("upload-failed")

        admin.goto("/admin/ingestion")
        letter = page.locator("tr[data-event]")
        expect(letter).to_contain_text("model_unavailable")
        expect(letter).to_contain_text("new-item")
        admin.screenshot("ingestion")
    finally:
        restore_model(admin_settings, hidden)

    letter.get_by_role("button", name="Retry").click()
    expect(page.get_by_role("status").first).to_contain_text("queued again")
    admin.goto(batch_url)
    expect(page.locator("[data-event] [data-status]")).to_have_text("done")
    admin.screenshot("upload-done")
    assert admin_services.tracker.dead_letter_count() == 0

    admin.goto("/admin/ingestion")
    expect(page.locator('[data-collection-points="dinov2-vits14-tiny-random"]')).to_have_text("15")


def test_upload_with_csv_and_watch_it_appear(admin: AdminBrowser, admin_catalog: Catalog) -> None:
    page = admin.sign_in(then="/admin/ingestion")
    page.get_by_label("Images", exact=True).set_input_files(
        [
            upload("a.jpg", "image/jpeg", admin_catalog.image(1)),
            upload("b.png", "image/png", admin_catalog.image(3)),
        ]
    )
    csv_text = "item_id,image,brand,price\nnew-a,a.jpg,umbrella,19.5\n"
    page.get_by_label("Metadata CSV (optional)").set_input_files(
        upload("items.csv", "text/csv", csv_text.encode())
    )
    page.get_by_role("button", name="Upload and queue").click()

    expect(page.locator("#batch-notes")).to_contain_text("b.png has no CSV row")
    expect(page.locator("[data-event] [data-status]")).to_have_text(["done", "done"])
    expect(page.locator("#batch-summary")).to_have_text("2 done, 0 failed, 0 queued.")
    admin.screenshot("upload-batch")
    page.get_by_role("link", name="new-a").click()
    expect(page.get_by_role("heading", name="Item new-a")).to_be_visible()
    expect(page.locator("dl.payload").first).to_contain_text("umbrella")


def test_errors_are_readable_messages(admin: AdminBrowser) -> None:
    page = admin.sign_in()
    page.get_by_label("Query image", exact=True).set_input_files(
        upload("notes.txt", "text/plain", b"shoot on Monday")
    )
    page.get_by_role("button", name="Search by image").click()
    expect(page.get_by_role("alert")).to_contain_text("notes.txt: Not an image we can read")
    no_stack_trace(page)
    admin.screenshot("error-not-an-image")

    admin.goto("/admin/ingestion")
    page.get_by_label("Images", exact=True).set_input_files(
        [
            upload("ok.jpg", "image/jpeg", b"\xff\xd8\xff\xe0garbage"),
            upload("notes.txt", "text/plain", b"shoot on Monday"),
        ]
    )
    page.get_by_role("button", name="Upload and queue").click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("Nothing was uploaded")
    expect(alert).to_contain_text("notes.txt: Not an image we can read")
    expect(alert).to_contain_text("ok.jpg")

    # Errors of the query service and the store, in words.
    admin.goto("/admin/items/no-such-item")
    expect(page.get_by_role("heading", name="No such item")).to_be_visible()
    expect(page.get_by_role("alert")).to_contain_text("No item 'no-such-item'")
    admin.goto("/admin/?model=no-such-model")
    expect(page.get_by_role("alert")).to_contain_text("unknown model 'no-such-model'")
    admin.goto("/admin/explore?k=40")
    expect(page.get_by_role("alert")).to_contain_text("cannot form 40 clusters")
    admin.goto("/admin/no-such-page")
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    no_stack_trace(page)


def test_explore_map(admin: AdminBrowser) -> None:
    page = admin.sign_in(then="/admin/explore?k=4")
    points = page.locator("svg.map a.map-point")
    expect(points).to_have_count(14)
    colours = {c.get_attribute("fill") for c in page.locator("svg.map circle").all()}
    assert len(colours) == 4
    points.first.hover()
    tip = page.locator("[data-map-tip]")
    expect(tip).to_be_visible()
    expect(tip.locator("img")).to_have_attribute("src", re.compile(r"/admin/thumbnails/"))
    admin.screenshot("explore")
    # Filtered subset: one brand only.
    page.locator("fieldset.facet", has_text="Brand").get_by_text(re.compile(r"^acme")).click()
    expect(page).to_have_url(re.compile(r"f\.brand=acme"))
    expect(points).to_have_count(4)


def _no_horizontal_overflow(page: Page) -> None:
    overflow = page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"{page.url} overflows by {overflow}px at phone width"


def test_phone_width_has_no_horizontal_overflow(admin: AdminBrowser) -> None:
    admin.viewport = PHONE
    page = admin.sign_in(then="/admin/?item=sku-02")
    for path, name in [
        ("/admin/?item=sku-02", "phone-search"),
        ("/admin/items/sku-05", "phone-item"),
        ("/admin/duplicates", "phone-duplicates"),
        ("/admin/explore", "phone-explore"),
        ("/admin/ingestion", "phone-ingestion"),
    ]:
        admin.goto(path)
        page.wait_for_load_state("networkidle")
        _no_horizontal_overflow(page)
        admin.screenshot(name)


def test_keyboard_tab_to_search_and_submit_with_enter(admin: AdminBrowser) -> None:
    page = admin.sign_in()
    page.locator("body").focus()
    for _ in range(40):
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement.id") == "query-item":
            break
    else:
        raise AssertionError("Tab never reached the item search box")
    # The focused input is visibly marked.
    outline = page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"
    page.keyboard.type("sku-06")
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"item=sku-06"))
    expect(page.get_by_role("heading", name="Like item sku-06")).to_be_visible()
    expect(page.locator("#results .card")).to_have_count(PAGE_SIZE)


def test_quality_shows_each_models_last_evaluation_and_its_picture(
    admin: AdminBrowser, admin_services: Services, admin_catalog: Catalog
) -> None:
    settings = admin_services.settings
    registry = ModelRegistry(settings.models_dir)
    csv_path = admin_catalog.root / "catalog.csv"
    labelled = catalog_images(csv_path, admin_catalog.images, label_column="product_id")
    evaluation = evaluate_model(
        settings, registry.manifest(settings.default_model), labelled, progress=False
    )
    record = evaluation_record(evaluation, source=str(csv_path))
    save_last(registry, evaluation, record)

    page = admin.sign_in(then="/admin/quality")
    section = page.locator("section.quality", has_text=settings.default_model)
    expect(section.locator("table.numbers tbody tr")).to_have_count(3)  # k = 1, 5, 10
    top1 = f"{record.retrieval.top_k_accuracy['1']:.3f}"
    expect(section.locator("table.numbers tbody tr").first).to_contain_text(top1)
    expect(section).to_contain_text(f"recall {record.duplicates.recall:.3f}")
    picture = section.locator("img.quality-picture")
    expect(picture).to_be_visible()
    assert picture.evaluate("image => image.naturalWidth") > 0  # the SVG was served and drawn
    admin.screenshot("quality")
    no_stack_trace(page)
