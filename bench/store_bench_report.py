"""Tables of the store benchmark, printed as text and written as Markdown."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

Cell = str | int | float | None


def cell(value: Cell, digits: int = 1) -> str:
    """A value as the tables show it: thousands separated, floats rounded, None as a dash."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return value


@dataclass
class Table:
    """A titled table: the first column left-aligned, the others right-aligned."""

    title: str
    headers: Sequence[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *values: Cell, digits: int = 1) -> None:
        """Append a row; numbers are formatted by ``cell``."""
        self.rows.append([cell(v, digits) for v in values])

    def text(self) -> str:
        """Fixed-width text, for the terminal."""
        widths = [
            max(len(row[i]) for row in [list(self.headers), *self.rows])
            for i in range(len(self.headers))
        ]

        def line(values: Sequence[str]) -> str:
            first = values[0].ljust(widths[0])
            rest = (v.rjust(w) for v, w in zip(values[1:], widths[1:], strict=True))
            return "  ".join([first, *rest]).rstrip()

        lines = [self.title, line(self.headers), *(line(row) for row in self.rows)]
        return "\n".join(lines + [f"  {note}" for note in self.notes])

    def markdown(self) -> str:
        """A Markdown table under a heading, notes as a list after it."""
        lines = [
            f"### {self.title}",
            "",
            "| " + " | ".join(self.headers) + " |",
            "|" + "|".join([":---", *("---:" for _ in self.headers[1:])]) + "|",
            *("| " + " | ".join(row) + " |" for row in self.rows),
        ]
        if self.notes:
            lines += ["", *(f"- {note}" for note in self.notes)]
        return "\n".join(lines)
