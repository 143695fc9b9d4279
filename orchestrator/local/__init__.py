"""The embedded stack: a Redis of its own, a supervisor of child processes (the only code that starts processes)."""
