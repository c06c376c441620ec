"""``python -m search_api.cli``: the ``lookalike`` command."""

from search_api.cli import main

main()
