"""The embedded store's folders: who owns the root, collection folders, records, the alias.

Layout under the root directory::

    lock                       flock held by the owning process (never removed)
    owner.pid                  pid of that process (written on open, removed on close)
    aliases.json               {"aliases": {"<prefix>": "<prefix>__<model>"}}
    <prefix>__<model>/
        collection.json        the model record: id, fingerprint, dimension, schema version
        shard/                 the EdgeShard
        shard.indexing/        a copy being indexed by a child process (``build_index``)
        shard.retired/         the previous shard while an indexed copy is swapped in
    .staging-*/ .trash-*/      a collection being created / being deleted

Every small file is replaced atomically (temp file, fsync, rename, fsync of the folder), and
every multi-step change is a sequence of renames, so a SIGKILL at any point leaves either
the old or the new state, and ``recover`` finishes or undoes what was interrupted.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import qdrant_edge as edge

from ingest.errors import CollectionMismatch, StoreUnavailable
from ingest.store.edge_convert import is_backend_error
from ingest.store.records import SCHEMA_VERSION, Recorded

RECORD_FILE = "collection.json"
SHARD = "shard"
INDEXING = "shard.indexing"
RETIRED = "shard.retired"
ALIASES_FILE = "aliases.json"
STAGING_PREFIX = ".staging-"
TRASH_PREFIX = ".trash-"


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file inside ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    """Replace ``path`` with ``data`` as JSON: readers see the old file or the new, never half."""
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with temporary.open("w", encoding="utf-8") as file:
            json.dump(data, file, indent=2, sort_keys=True)
            file.write("\n")
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    fsync_dir(path.parent)


def read_json(path: Path) -> dict[str, Any] | None:
    """A small JSON file's object, or None if it is missing or not a JSON object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def remove_tree(path: Path) -> None:
    """Delete a folder: renamed away first, so a half-deleted folder never looks like data."""
    if not path.exists():
        return
    trash = path.with_name(f"{TRASH_PREFIX}{path.name}-{uuid.uuid4().hex}")
    os.rename(path, trash)
    fsync_dir(path.parent)
    shutil.rmtree(trash, ignore_errors=True)


# --- the root and its owner ---------------------------------------------------------------


def owner_refusal(root: Path, pid: int | None) -> StoreUnavailable:
    """The one-line error for a store that another process (or this one) already owns."""
    if pid == os.getpid():
        return StoreUnavailable(
            f"the embedded vector store at {root} is already open in this process (pid "
            f"{pid}): close the other store object first"
        )
    who = f"process {pid}" if pid is not None else "another process"
    return StoreUnavailable(
        f"the embedded vector store at {root} is already open in {who}; one process owns "
        "it: stop that process (or send your requests through it, e.g. its API), or run a "
        "Qdrant server and set LOOKALIKE_QDRANT_URL"
    )


class RootOwner:
    """Exclusive ownership of a store root, released on close or when the process dies.

    An flock on ``lock`` decides (the kernel drops it with the process, so a SIGKILL leaves
    no stale lock); ``owner.pid`` only tells the refused process whom to look for.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self._lock: IO[str] | None = (root / "lock").open("a+", encoding="utf-8")
        try:
            fcntl.flock(self._lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            self._lock = None
            raise owner_refusal(root, self.recorded_pid(root)) from None
        write_json_atomic(root / "owner.pid", {"pid": os.getpid()})

    @staticmethod
    def recorded_pid(root: Path) -> int | None:
        """The pid the current owner wrote, if any."""
        pid = (read_json(root / "owner.pid") or {}).get("pid")
        return pid if isinstance(pid, int) else None

    def release(self) -> None:
        """Give the root up (idempotent)."""
        if self._lock is None:
            return
        (self.root / "owner.pid").unlink(missing_ok=True)
        fcntl.flock(self._lock.fileno(), fcntl.LOCK_UN)
        self._lock.close()
        self._lock = None


def clean_root(root: Path) -> None:
    """Remove what an interrupted creation or deletion left behind."""
    for leftover in root.iterdir():
        if leftover.name.startswith((STAGING_PREFIX, TRASH_PREFIX)):
            shutil.rmtree(leftover, ignore_errors=True)


# --- the alias manifest -------------------------------------------------------------------


class AliasManifest:
    """Aliases (``<prefix>`` -> collection name) in one small JSON file, replaced atomically."""

    def __init__(self, root: Path) -> None:
        self.path = root / ALIASES_FILE

    def read(self) -> dict[str, str]:
        """Every alias and its collection."""
        aliases = (read_json(self.path) or {}).get("aliases", {})
        return {str(k): str(v) for k, v in aliases.items()} if isinstance(aliases, dict) else {}

    def target(self, alias: str) -> str | None:
        """The collection an alias names, if it exists."""
        return self.read().get(alias)

    def write(self, aliases: Mapping[str, str]) -> None:
        """Replace every alias at once."""
        write_json_atomic(self.path, {"aliases": dict(sorted(aliases.items()))})

    def point(self, alias: str, collection: str) -> None:
        """Point an alias at a collection (readers see the old target or the new one)."""
        self.write({**self.read(), alias: collection})

    def forget_collection(self, collection: str) -> None:
        """Drop the aliases of a deleted collection, as Qdrant does."""
        aliases = self.read()
        kept = {alias: name for alias, name in aliases.items() if name != collection}
        if kept != aliases:
            self.write(kept)


# --- collection folders -------------------------------------------------------------------


def record_data(recorded: Recorded) -> dict[str, Any]:
    """The model record as written to ``collection.json`` (the Qdrant backend's metadata)."""
    return {
        "model_id": recorded.model_id,
        "model_fingerprint": recorded.fingerprint,
        "dimension": recorded.dimension,
        "schema_version": SCHEMA_VERSION,
    }


def read_record(folder: Path) -> Recorded:
    """The model a collection folder was built with; refuse folders Lookalike did not make."""
    data = read_json(folder / RECORD_FILE) or {}
    dimension = data.get("dimension")
    if "model_fingerprint" not in data or not isinstance(dimension, int):
        raise CollectionMismatch(
            f"collection {folder.name!r} exists but was not created by Lookalike (no model "
            "metadata); use another collection prefix"
        )
    return Recorded(
        model_id=str(data.get("model_id", "")),
        fingerprint=str(data["model_fingerprint"]),
        dimension=dimension,
    )


def create_folder(
    root: Path,
    name: str,
    recorded: Recorded,
    config: edge.EdgeConfig,
    payload_indexes: Sequence[str],
) -> Path:
    """Create a collection folder with its record and an empty shard, all or nothing."""
    staging = root / f"{STAGING_PREFIX}{name}-{uuid.uuid4().hex}"
    staging.mkdir()
    write_json_atomic(staging / RECORD_FILE, record_data(recorded))
    shard = edge.EdgeShard.create(str(staging / SHARD), config)
    for field in payload_indexes:
        shard.update(edge.UpdateOperation.create_field_index(field, edge.PayloadSchemaType.Keyword))
    shard.flush()
    shard.close()
    # The shard remembers its path, so it is renamed closed and loaded again from its home.
    os.rename(staging, root / name)
    fsync_dir(root)
    return root / name


def recover(folder: Path) -> None:
    """Finish or undo an index swap that a crash interrupted (see ``swap_in``)."""
    shard, indexing, retired = folder / SHARD, folder / INDEXING, folder / RETIRED
    if retired.exists():
        # The swap had not committed: the retired shard holds every acknowledged write.
        if shard.exists():
            remove_tree(shard)
        os.rename(retired, shard)
        fsync_dir(folder)
    if indexing.exists():
        remove_tree(indexing)
    clean_root(folder)  # a shard whose deletion was cut short


def load_shard(path: Path) -> edge.EdgeShard:
    """Open a shard, turning "someone holds its WAL" into a clear ``StoreUnavailable``."""
    try:
        return edge.EdgeShard.load(str(path))
    except Exception as exc:
        # Only when the shard was opened behind our back: our own lock refuses first.
        if is_backend_error(exc) and "WouldBlock" in str(exc):
            root = path.parent.parent
            raise owner_refusal(root, RootOwner.recorded_pid(root)) from None
        raise


def copy_for_indexing(folder: Path) -> Path:
    """Copy the (flushed, quiet) shard to ``shard.indexing``, where a child indexes it."""
    target = folder / INDEXING
    if target.exists():
        remove_tree(target)
    # The WAL's lock file is copied too; it is only a file, the lock itself stays ours.
    shutil.copytree(folder / SHARD, target)
    return target


@contextlib.contextmanager
def swap_in(folder: Path) -> Iterator[Path]:
    """Put the indexed copy in place of the shard; commit only if the body succeeds.

    The body loads the new shard (yielded path) and replays the writes made during the
    build. Until it returns, ``shard.retired`` is kept, and ``recover`` would bring it back.
    """
    shard, indexing, retired = folder / SHARD, folder / INDEXING, folder / RETIRED
    os.rename(shard, retired)
    os.rename(indexing, shard)
    fsync_dir(folder)
    try:
        yield shard
    except BaseException:
        # The body closed what it opened. Put the copy aside (recover deletes it) and bring
        # the untouched shard back.
        os.rename(shard, indexing)
        os.rename(retired, shard)
        fsync_dir(folder)
        raise
    remove_tree(retired)  # the commit: once renamed away, recover no longer restores it


# A separate process builds the index: EdgeShard.optimize() keeps the GIL (18-180 s at 100k
# points), so in the owner it would stall every other thread; measured at 20k x 384, one
# query waited through the whole 18.8 s optimize.
_OPTIMIZE = """
import sys
import qdrant_edge
shard = qdrant_edge.EdgeShard.load(sys.argv[1])
changed = shard.optimize()
shard.flush()
shard.close()
print("changed" if changed else "unchanged", flush=True)
"""


def start_optimizer(path: Path) -> subprocess.Popen[str]:
    """Start a child process that indexes the shard at ``path`` (prints changed/unchanged)."""
    return subprocess.Popen(  # noqa: S603 (our own interpreter and code, no user input)
        [sys.executable, "-c", _OPTIMIZE, str(path)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
