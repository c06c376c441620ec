"""Exporting stored embeddings: a collection, or the part of it a filter selects, read from the
store page by page (constant memory) and written as JSON lines, a ``.npy`` matrix with a
sidecar, or Parquet.

(``ingest.models.export`` is the other export: a model's weights into an ONNX file.)
"""
