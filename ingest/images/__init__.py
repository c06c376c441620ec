"""Images: safe decoding of hostile input, reference preprocessing, thumbnails, blobs, sources."""
