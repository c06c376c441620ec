"""The producer side of the ingestion queue: publishing events and starting jobs on the workers.

Used by the web app and the command line; it sends Celery messages by task name and never
imports the workers' tasks (``schemas.queue`` is the contract both sides share).
"""
