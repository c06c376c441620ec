"""Request and response bodies of the HTTP API (`/api/v1`), from which OpenAPI is built."""
