"""The admin page under /admin: server-rendered pages for the catalog's admins.

Pages: search (by image or item, facet filters, one result per product/brand), an item's
page (neighbours, near-duplicates), duplicate review, an explore map, and ingestion (queue,
throughput, dead letters, uploads). Views call the query service and ``ingest`` in-process,
never the HTTP API. Sign-in takes an admin API key; with no key configured (open API) the
page is open too and says so on every page. See ``search_api/admin/session.py``.
"""

from __future__ import annotations

from search_api.admin.setup import register_admin

__all__ = ["register_admin"]
