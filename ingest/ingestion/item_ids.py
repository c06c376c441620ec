"""Item ids from file names: the name (a path below a folder, or an uploaded file's name)
without its suffix, unless two files would then share one (``photo.jpg`` and ``photo.png``):
those keep their suffix.

Two images of one item id would be stored as one item with two pictures, which separate files
rarely mean; keeping the suffix stores both, and the note on each says why. Folder ingestion
(``lookalike ingest FOLDER``) and the admin page's upload form name their files this way.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath


@dataclass(frozen=True)
class FolderItemId:
    """The item id of one file, and why it keeps its suffix if it does."""

    item_id: str
    note: str | None = None


def folder_item_ids(root: Path, paths: Sequence[Path]) -> dict[Path, FolderItemId]:
    """Each file's item id: its relative path without suffix, or with it where ids would clash."""
    relative = {path: path.relative_to(root).as_posix() for path in paths}
    named = name_item_ids(list(relative.values()))
    return {path: named[relative[path]] for path in paths}


def name_item_ids(names: Sequence[str]) -> dict[str, FolderItemId]:
    """Each name's item id (names are ``/``-separated): without suffix, or with it on a clash."""
    unique = list(dict.fromkeys(names))  # the same name twice is one file's id, asked twice
    plain = {name: PurePosixPath(name).with_suffix("").as_posix() for name in unique}
    ids = dict(plain)
    # Names are unique, so every round moves a clashing file to its full name and ends: a kept
    # suffix can meet another file's plain id (photo.jpg and photo.jpg.png), hence the rounds.
    while clashing := _clashing(ids):
        for name in clashing:
            ids[name] = name
    # Indexed once: a folder exported as both .jpg and .png has a clash for every file.
    by_plain: dict[str, list[str]] = defaultdict(list)
    for name in unique:
        by_plain[plain[name]].append(name)
    named: dict[str, FolderItemId] = {}
    for name in unique:
        if ids[name] == plain[name]:
            named[name] = FolderItemId(plain[name])
            continue
        met = [*by_plain[plain[name]], plain[name] if plain[name] in plain else None]
        others = sorted({other for other in met if other is not None and other != name})
        named[name] = FolderItemId(
            name,
            f"{name} is item {name!r}, not {plain[name]!r}: "
            f"{', '.join(others)} would be item {plain[name]!r} too, so each keeps its suffix",
        )
    return named


def _clashing(ids: dict[str, str]) -> list[str]:
    """Files sharing an item id with another that can still take their full name."""
    by_id: dict[str, list[str]] = defaultdict(list)
    for name, item_id in ids.items():
        by_id[item_id].append(name)
    return [
        name for names in by_id.values() if len(names) > 1 for name in names if ids[name] != name
    ]
