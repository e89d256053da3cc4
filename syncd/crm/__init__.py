"""CRM connectors: syncd's records and tasks written into a CRM, its directory read back."""
