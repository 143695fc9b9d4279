"""Sagas: submit, templates, the engine's decisions and effects, step kinds, saga SLAs, read models."""
