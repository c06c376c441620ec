"""Embedding models: the registry, model files and their sources, export, the ONNX embedder."""
