"""Throw-away local servers (Dovecot) with sample data, for the demo, the tests and the benchmark."""
