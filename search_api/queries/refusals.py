"""How the query service refuses work it must not do (each a ValueError: a 422 for the API).

Kept apart from the query modules so that the error table can name them without importing
scikit-learn, which only clustering needs.
"""

from __future__ import annotations


class TooManyPoints(ValueError):
    """More points match the filter than a clustering may load."""

    def __init__(self, count: int, max_points: int) -> None:
        super().__init__(
            f"{count} points match the filter, more than the {max_points} a clustering may "
            "load; narrow the filter or raise max_points"
        )
        self.count = count
        self.max_points = max_points
