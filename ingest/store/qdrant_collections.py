"""The Qdrant store's collections: creation, payload indexes, recorded models, the alias."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import UnexpectedResponse

from ingest.errors import CollectionMismatch, CollectionNotFound
from ingest.store.base import collection_name
from ingest.store.records import SCHEMA_VERSION, Recorded, check_model
from schemas.models import ModelManifest
from schemas.points import CollectionInfo, IndexMode

# Local mode keeps no payload indexes and says so once per process; the indexes matter on a
# server only, so the warning is noise for the embedded default.
_LOCAL_INDEX_WARNING = "Payload indexes have no effect in the local Qdrant"


def read_record(name: str, info: models.CollectionInfo) -> Recorded:
    """Read the model a collection was built with from its metadata; refuse foreign ones."""
    metadata = info.config.metadata or {}
    vectors = info.config.params.vectors
    if "model_fingerprint" not in metadata or not isinstance(vectors, models.VectorParams):
        raise CollectionMismatch(
            f"collection {name!r} exists but was not created by Lookalike (no model metadata); "
            "use another collection prefix"
        )
    return Recorded(
        model_id=str(metadata.get("model_id", "")),
        fingerprint=str(metadata["model_fingerprint"]),
        dimension=vectors.size,
    )


class Collections:
    """One collection per model, ``<prefix>__<model>``, with the records verified so far.

    Not thread-safe on its own: ``QdrantStore`` calls it under its guard, and turns backend
    errors into ``StoreError`` (forgetting the records, see ``forget``).
    """

    def __init__(
        self,
        client: QdrantClient,
        *,
        prefix: str,
        payload_indexes: Sequence[str],
        shard_number: int,
        replication_factor: int,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.payload_indexes = tuple(payload_indexes)
        self.shard_number = shard_number
        self.replication_factor = replication_factor
        self._recorded: dict[str, Recorded] = {}

    def name(self, model_id: str) -> str:
        """The model's collection name."""
        return collection_name(self.prefix, model_id)

    def forget(self) -> None:
        """Drop every verified record, so that the next use reads the collections again."""
        self._recorded.clear()

    def verified(self, model: ModelManifest) -> bool:
        """Whether the model's collection was already verified as this model's."""
        return self._recorded.get(self.name(model.spec.id)) == Recorded.of(model)

    def ensure(self, model: ModelManifest) -> CollectionInfo:
        """Create the model's collection if absent; refuse if it was built by another model."""
        name = self.name(model.spec.id)
        if not self.client.collection_exists(name):
            self._create(name, model)
        info = self.client.get_collection(name)
        recorded = read_record(name, info)
        check_model(name, recorded, model)
        self._create_missing_indexes(name, set(info.payload_schema))
        self._recorded[name] = recorded
        return self._info(name, recorded, current=self.alias_target() == name)

    def _create(self, name: str, model: ModelManifest) -> None:
        metadata = {
            "model_id": model.spec.id,
            "model_fingerprint": model.fingerprint,
            "dimension": model.spec.dimension,
            "schema_version": SCHEMA_VERSION,
        }
        vectors = models.VectorParams(size=model.spec.dimension, distance=models.Distance.COSINE)
        try:
            self.client.create_collection(
                name,
                vectors_config=vectors,
                metadata=metadata,
                # A Qdrant cluster spreads and copies the collection; local mode ignores both.
                shard_number=self.shard_number,
                replication_factor=self.replication_factor,
            )
        except UnexpectedResponse as exc:
            # Two workers starting at once both see no collection; the loser verifies the
            # winner's collection instead of failing.
            if exc.status_code != 409:
                raise

    def _create_missing_indexes(self, name: str, existing: set[str]) -> None:
        # Checked on every verification so that fields added to the settings later get indexed.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_LOCAL_INDEX_WARNING, category=UserWarning)
            for field in self.payload_indexes:
                if field not in existing:
                    self.client.create_payload_index(
                        name, field, field_schema=models.PayloadSchemaType.KEYWORD, wait=True
                    )

    def _info(self, name: str, recorded: Recorded, *, current: bool = False) -> CollectionInfo:
        described = self.client.get_collection(name)
        indexed = described.indexed_vectors_count or 0
        # A server's optimizer indexes in the background (status yellow meanwhile); local mode
        # always compares every vector and reports no indexed vectors.
        index: IndexMode = "exact"
        if described.status == models.CollectionStatus.YELLOW:
            index = "indexing"
        elif indexed:
            index = "indexed"
        return CollectionInfo(
            name=name,
            model_id=recorded.model_id,
            dimension=recorded.dimension,
            model_fingerprint=recorded.fingerprint,
            points=self.client.count(name, exact=True).count,
            current=current,
            index=index,
            indexed_vectors=indexed,
        )

    def existing(self, model_id: str) -> tuple[str, Recorded]:
        """The model's collection name and record; a ``StoreError`` if it was never created."""
        name = self.name(model_id)
        if name not in self._recorded and not self.client.collection_exists(name):
            raise CollectionNotFound(
                model_id, f"no collection for model {model_id!r}; ingest some images first"
            )
        return name, self.record_of(name)

    def existing_for(self, model_id: str, vector: Sequence[float]) -> str:
        """The model's collection name, if the query vector has the dimension it holds."""
        name, recorded = self.existing(model_id)
        if len(vector) != recorded.dimension:
            raise CollectionMismatch(
                f"query vector has {len(vector)} dimensions but the collection of model "
                f"{model_id!r} holds {recorded.dimension}-d vectors"
            )
        return name

    def record_of(self, name: str) -> Recorded:
        """An existing collection's record, read once (``CollectionMismatch`` if not ours)."""
        recorded = self._recorded.get(name)
        if recorded is None:
            recorded = read_record(name, self.client.get_collection(name))
            self._recorded[name] = recorded
        return recorded

    def drop(self, model_id: str) -> bool:
        """Delete a model's collection and all its points; False if there was none."""
        name = self.name(model_id)
        self._recorded.pop(name, None)
        if not self.client.collection_exists(name):
            return False
        return self.client.delete_collection(name)

    def listing(self) -> list[CollectionInfo]:
        """Every Lookalike collection on the client (other collections are left out)."""
        infos = []
        current = self.alias_target()
        # Aliases are not listed here: only real collections.
        for description in self.client.get_collections().collections:
            name = description.name
            if not name.startswith(f"{self.prefix}__"):
                continue
            try:
                recorded = read_record(name, self.client.get_collection(name))
            except CollectionMismatch:
                continue  # our prefix, but not built by Lookalike
            infos.append(self._info(name, recorded, current=name == current))
        return sorted(infos, key=lambda info: info.name)

    def alias_target(self) -> str | None:
        """The collection the ``<prefix>`` alias points at, if the alias exists."""
        for alias in self.client.get_aliases().aliases:
            if alias.alias_name == self.prefix:
                return alias.collection_name
        return None

    def current_model(self) -> str | None:
        """Model id of the collection the ``<prefix>`` alias points at; None without alias."""
        name = self.alias_target()
        if name is None:
            return None
        try:
            return self.record_of(name).model_id
        except CollectionMismatch:
            # The alias was pointed elsewhere by hand: not one of ours, so no current model.
            return None

    def set_current(self, model_id: str) -> None:
        """Point the ``<prefix>`` alias at the model's (existing) collection, atomically."""
        name = self.name(model_id)
        if not self.client.collection_exists(name):
            raise CollectionNotFound(
                model_id, f"no collection for model {model_id!r}; nothing to make current"
            )
        operations: list[models.AliasOperations] = []
        # A server refuses to delete an alias that does not exist: delete only the one we saw.
        if self.alias_target() is not None:
            operations.append(
                models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=self.prefix))
            )
        operations.append(
            models.CreateAliasOperation(
                create_alias=models.CreateAlias(collection_name=name, alias_name=self.prefix)
            )
        )
        # One request: readers see the old collection or the new one, never no alias.
        self.client.update_collection_aliases(change_aliases_operations=operations)
