"""Flask API, admin page, query service and the ``lookalike`` command line."""
