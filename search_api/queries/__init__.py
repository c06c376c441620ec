"""The query service: similar items, groups, facets, recommendations and clusters.

Plain functions over the store that the API, the admin page and the command line all call."""
