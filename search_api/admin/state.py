"""A search page's state in its URL: query, model, filters, grouping, page.

Filters are ``f.<field>=<value>`` (repeat for any of several values) and ``min.<field>`` /
``max.<field>`` for numeric ranges; the fields offered come from ``LOOKALIKE_ADMIN__*``.
Everything is a GET parameter, so a result page can be bookmarked, shared and reloaded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from werkzeug.datastructures import MultiDict

from ingest.ingestion.bulk import parse_cell
from schemas.points import AnyOfCondition, Condition, MatchCondition, PayloadFilter, RangeCondition
from schemas.settings import AdminSettings
from search_api.admin.blueprint import QueryPairs, parse_float, parse_int

MAX_VALUES_PER_FIELD = 50
MAX_PAGE = 1000


def _match(key: str, values: Sequence[str]) -> Condition:
    """Any of the values; typed like catalog ingestion types CSV cells (``3`` is a number)."""
    typed = [parse_cell(value) for value in values]
    if len(typed) == 1:
        value = typed[0]
        if isinstance(value, float):
            return RangeCondition(key=key, gte=value, lte=value)
        return MatchCondition(key=key, value=value)
    integers = [v for v in typed if isinstance(v, int)]
    if len(integers) == len(typed):
        return AnyOfCondition(key=key, values=integers)
    return AnyOfCondition(key=key, values=[str(value) for value in values])


@dataclass(frozen=True)
class SearchState:
    """What a search page shows, parsed from (and turned back into) its query string."""

    model_id: str
    item_id: str | None = None
    image: str | None = None  # sha256 of an uploaded query image
    facets: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    ranges: Mapping[str, tuple[float | None, float | None]] = field(default_factory=dict)
    group_by: str | None = None
    page: int = 1
    cursor: str | None = None  # grouped results page on with a cursor
    after: str | None = None  # browsing (no query) pages on with a scroll offset

    @classmethod
    def parse(cls, args: MultiDict[str, str], model_id: str, config: AdminSettings) -> SearchState:
        """The state of a request's query string; unknown fields are ignored."""
        facets = {}
        for name in config.facet_fields:
            values = tuple(dict.fromkeys(v for v in args.getlist(f"f.{name}") if v))
            if values:
                facets[name] = values[:MAX_VALUES_PER_FIELD]
        ranges = {}
        for name in config.range_fields:
            low, high = parse_float(args.get(f"min.{name}")), parse_float(args.get(f"max.{name}"))
            if low is not None or high is not None:
                ranges[name] = (low, high)
        group = args.get("group") or None
        item_id = (args.get("item") or "").strip()[:500] or None
        image = (args.get("image") or "").strip().lower()[:64] or None
        return cls(
            model_id=model_id,
            item_id=None if image else item_id,
            image=image,
            facets=facets,
            ranges=ranges,
            group_by=group if group in config.group_fields else None,
            page=parse_int(args.get("page"), 1, low=1, high=MAX_PAGE),
            cursor=(args.get("cursor") or None) if group else None,
            after=args.get("after") or None,
        )

    @property
    def has_query(self) -> bool:
        """Ranked by similarity to an item or image (else: browsing the collection)."""
        return self.item_id is not None or self.image is not None

    def payload_filter(self, without: str | None = None) -> PayloadFilter | None:
        """The filter of the selected values and ranges (leaving out one field's, for facets)."""
        conditions: list[Condition] = [
            _match(key, values) for key, values in self.facets.items() if key != without
        ]
        for key, (low, high) in self.ranges.items():
            if key != without:
                conditions.append(RangeCondition(key=key, gte=low, lte=high))
        return PayloadFilter(must=conditions) if conditions else None

    def selected(self, key: str, value: Any) -> bool:
        """Whether a facet value is among the selected ones."""
        return str(value) in self.facets.get(key, ())

    def pairs(self, *, paging: bool = False) -> list[tuple[str, str]]:
        """The query string of this state (the page position only with ``paging``)."""
        pairs: list[tuple[str, str]] = [("model", self.model_id)]
        if self.item_id:
            pairs.append(("item", self.item_id))
        if self.image:
            pairs.append(("image", self.image))
        pairs += self.filter_pairs()
        if self.group_by:
            pairs.append(("group", self.group_by))
        if paging:
            if self.page > 1:
                pairs.append(("page", str(self.page)))
            if self.cursor:
                pairs.append(("cursor", self.cursor))
            if self.after:
                pairs.append(("after", self.after))
        return pairs

    def filter_pairs(self) -> list[tuple[str, str]]:
        """Only the filters, as query pairs."""
        pairs = [(f"f.{key}", value) for key, values in self.facets.items() for value in values]
        for key, (low, high) in self.ranges.items():
            if low is not None:
                pairs.append((f"min.{key}", f"{low:g}"))
            if high is not None:
                pairs.append((f"max.{key}", f"{high:g}"))
        return pairs

    def toggled(self, key: str, value: Any) -> SearchState:
        """This state with a facet value selected or unselected (back to the first page)."""
        text = str(value)
        current = self.facets.get(key, ())
        values = tuple(v for v in current if v != text) if text in current else (*current, text)
        facets = {k: v for k, v in self.facets.items() if k != key}
        if values:
            facets[key] = values
        return replace(self, facets=facets, page=1, cursor=None, after=None)

    def without_filters(self) -> SearchState:
        """This state with no facet value or range selected."""
        return replace(self, facets={}, ranges={}, page=1, cursor=None, after=None)

    def without_query(self) -> SearchState:
        """Browsing the collection under the same filters."""
        return replace(self, item_id=None, image=None, page=1, cursor=None, after=None)

    def like_item(self, item_id: str) -> SearchState:
        """Searching with a stored item, under the same filters and grouping."""
        return replace(self, item_id=item_id, image=None, page=1, cursor=None, after=None)

    def first_page(self) -> SearchState:
        """This state on its first page."""
        return replace(self, page=1, cursor=None, after=None)

    def hidden_fields(self, *, exclude: Sequence[str] = ()) -> QueryPairs:
        """Pairs for hidden inputs of a form that changes only some of the state."""
        return [(k, v) for k, v in self.pairs() if k not in exclude]
