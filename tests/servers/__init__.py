"""Throw-away local servers (Dovecot, Radicale, Xandikos, PostgreSQL) and sample data.

For the tests, the benchmark and the demo only: this lives beside the tests, not in the
``syncd`` package, so an installed syncd carries no server launchers and imports nothing
from here (tests/unit/test_packaging.py checks both).
"""
