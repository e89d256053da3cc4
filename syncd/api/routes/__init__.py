"""One module of routes per resource; each exports ``router``, its paths under ``PREFIX``
(declared whole, so that a route's template, as the metrics label it, is its full path)."""

PREFIX = "/api/v1"
