"""Item ids of a folder's images: the path below the folder without its suffix, unless two
files would then share one (``photo.jpg`` and ``photo.png``): those keep their suffix.

Two images of one item id would be stored as one item with two pictures, which a folder of
separate files rarely means; keeping the suffix stores both, and the note on each says why.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class FolderItemId:
    """The item id of one file, and why it keeps its suffix if it does."""

    item_id: str
    note: str | None = None


def folder_item_ids(root: Path, paths: Sequence[Path]) -> dict[Path, FolderItemId]:
    """Each file's item id: its relative path without suffix, or with it where ids would clash."""
    relative = {path: path.relative_to(root).as_posix() for path in paths}
    plain = {path: path.relative_to(root).with_suffix("").as_posix() for path in paths}
    ids = dict(plain)
    # Paths are unique, so every round moves a clashing file to its full path and ends: a kept
    # suffix can meet another file's plain id (photo.jpg and photo.jpg.png), hence the rounds.
    while clashing := _clashing(ids, relative):
        for path in clashing:
            ids[path] = relative[path]
    # Indexed once: a folder exported as both .jpg and .png has a clash for every file.
    by_plain: dict[str, list[Path]] = defaultdict(list)
    for path in paths:
        by_plain[plain[path]].append(path)
    by_relative = {name: path for path, name in relative.items()}
    named: dict[Path, FolderItemId] = {}
    for path in paths:
        if ids[path] == plain[path]:
            named[path] = FolderItemId(plain[path])
            continue
        met = [*by_plain[plain[path]], by_relative.get(plain[path])]
        others = sorted({relative[other] for other in met if other is not None and other != path})
        named[path] = FolderItemId(
            ids[path],
            f"{relative[path]} is item {ids[path]!r}, not {plain[path]!r}: "
            f"{', '.join(others)} would be item {plain[path]!r} too, so each keeps its suffix",
        )
    return named


def _clashing(ids: dict[Path, str], relative: dict[Path, str]) -> list[Path]:
    """Files sharing an item id with another that can still take their full path."""
    by_id: dict[str, list[Path]] = defaultdict(list)
    for path, item_id in ids.items():
        by_id[item_id].append(path)
    return [
        path
        for paths in by_id.values()
        if len(paths) > 1
        for path in paths
        if ids[path] != relative[path]
    ]
