"""Image to vector to stored point: decoding, models, embedding, vector store, ingestion."""
