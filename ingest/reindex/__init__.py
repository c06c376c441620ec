"""Re-indexing: re-embed every stored image into another model's collection, then switch.

Collections are ``<prefix>__<model id>``; the alias ``<prefix>`` names the *current* one
(``ingest.store.current.current_model_id``: queries and uploads without an explicit model use it).
A re-index reads the current model's collection page by page, fetches each point's image
again from its ``source_uri`` (images are never kept in the store), embeds it with the target
model and upserts it under the same point id with the same payload. Searches keep using the
old collection until the very end, when the alias moves in one atomic store request.

Everything here is plain functions over the store, a model loader, the source resolver and a
job record in Redis; ``workers.reindex_tasks`` runs one page per Celery task, tests run the
same steps in-process. Every step is idempotent:

- a page's points already present in the target are skipped, so a redelivered page (a worker
  killed mid-page) or a whole new job to the same target resumes instead of starting over;
- a page's counts are recorded with a compare-and-set on ``pages_done``, so two deliveries of
  one page count it once, and only the delivery that recorded it queues the next page;
- an image that cannot be read or decoded is a failure with its reason, counted once and not
  retried by this job (a later job to the same target tries it again).

While the pages run, uploads land in the old collection and deletes and payload updates go to
every collection. Before the switch the job reconciles: target points whose source point is
gone are deleted, source points the scroll missed are embedded, drifted metadata is copied.
After the switch one more catch-up pass picks up uploads that reached the old collection just
before it. The old collection is kept (``drop_old`` deletes it): rolling back is a re-index to
the old model, which only re-embeds what changed since.
"""
