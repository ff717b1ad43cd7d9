"""The HTTP face of a node: the Jobs API routes, request bodies, errors, admin, metrics, OpenAPI."""
