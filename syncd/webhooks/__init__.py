"""Signed webhook delivery of the outbox's events (Standard Webhooks).

``queue`` keeps the delivery state in the database (a cursor per endpoint into ``events``,
a row per event taken and not yet delivered), ``http`` signs and sends one request,
``policy`` decides what an answer means (retry when, fail, disable), and ``deliverer``
runs it all: one worker per endpoint in ``syncd run``, or a bounded drain in ``syncd sync``.
"""
