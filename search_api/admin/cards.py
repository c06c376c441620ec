"""What a result looks like on the page: thumbnail, score and key metadata of a point."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from flask import url_for

from ingest.images.thumbnails import is_thumbnail_key

PLACEHOLDER = "placeholder.svg"


def thumbnail_url(payload: Mapping[str, Any]) -> str:
    """The point's ingest-time thumbnail (served under /admin), or the placeholder picture."""
    key = payload.get("thumbnail_key")
    if isinstance(key, str) and is_thumbnail_key(key):
        return url_for("admin_ui.thumbnail", key=key)
    return url_for("admin_ui.static", filename=PLACEHOLDER)


def shown(value: Any) -> str:
    """A payload value as text: numbers without noise, lists joined."""
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return ", ".join(shown(v) for v in value)
    return str(value)


def item_url(item_id: str, model_id: str) -> str:
    """The item page."""
    return url_for("admin_ui.item", item_id=item_id, model=model_id)


@dataclass(frozen=True)
class Card:
    """One stored image as a result card."""

    point_id: str
    item_id: str
    model_id: str
    payload: Mapping[str, Any]
    score: float | None = None
    group: str | None = None  # "product_id p3" when results are grouped

    @property
    def thumbnail(self) -> str:
        """URL of its thumbnail (or placeholder)."""
        return thumbnail_url(self.payload)

    @property
    def has_thumbnail(self) -> bool:
        """Whether a real thumbnail exists (else the placeholder is shown)."""
        key = self.payload.get("thumbnail_key")
        return isinstance(key, str) and is_thumbnail_key(key)

    @property
    def url(self) -> str:
        """Its item page."""
        return item_url(self.item_id, self.model_id)

    def fields(self, names: list[str]) -> list[tuple[str, str]]:
        """(label, text) of the named payload fields it has."""
        return [
            (name.replace("_", " "), shown(self.payload[name]))
            for name in names
            if self.payload.get(name) not in (None, "")
        ]


def template_helpers() -> dict[str, Callable[..., Any]]:
    """Functions the admin templates call."""
    return {"thumbnail_url": thumbnail_url, "shown": shown, "item_url": item_url}
