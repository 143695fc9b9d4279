"""Celery glue: the app, the worker's task events, the worker's entry point."""
