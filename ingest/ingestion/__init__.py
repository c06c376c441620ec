"""Ingestion: image to vector to stored point, for queue events, bulk folders and catalogs."""
