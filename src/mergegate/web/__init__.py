"""The gate server's HTTP face: REST API (OpenAPI at /docs), git smart HTTP at /git/."""
