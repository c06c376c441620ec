"""Retrieval and near-duplicate evaluation of embedding models: metrics, data sets, runs."""
