"""Op modules, one per area; every module here is imported at start-up and registers its ``@op`` handlers."""
