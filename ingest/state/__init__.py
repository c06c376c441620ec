"""Every Redis key layout Lookalike keeps next to the queue, each in one module that owns it.

Keys: see ``ingest.state.keys``. Concurrent writes follow one rule, documented there."""
