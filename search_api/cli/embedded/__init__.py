"""Embedded services for a machine with no servers: a Valkey (Redis) server from a PyPI wheel."""
