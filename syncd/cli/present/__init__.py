"""Presenters: how each resource reads for people (tables, sentences) and for scripts (JSON).

The store returns data (datetimes, reason codes); wording and formats live here, so a
change of phrasing never touches a query and the JSON shapes are pinned in one place.
"""
