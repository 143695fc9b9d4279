"""workyard's MCP server: the work-item loop and sagas as MCP tools, item types as resources.

The tools are defined once (:mod:`.tools`) over a :class:`~.backend.Backend`. The API serves them
at ``/mcp`` (streamable HTTP, :mod:`.http`) on an in-process backend; ``workyard mcp`` serves
them over stdio (:mod:`.proxy`) on a backend that calls a running API, so an agent's host needs
a URL and a token, never database credentials.
"""
