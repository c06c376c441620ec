"""Vector store interface and its backends."""

from ingest.store.base import VectorStore, collection_name, point_id

__all__ = ["VectorStore", "collection_name", "point_id"]
