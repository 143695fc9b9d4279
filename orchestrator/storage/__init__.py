"""Engines, units of work, migrations and cursors: how workyard's state is kept."""
