"""xiaoyou core: the global scheduler, model backends, settings and the error taxonomy."""
