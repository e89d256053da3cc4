"""The store owns the schema, the transactions and every query."""
