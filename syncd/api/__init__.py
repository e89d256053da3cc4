"""syncd over HTTP: the API the CRM and the team's other systems call (see README, HTTP API)."""
