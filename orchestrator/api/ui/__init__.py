"""The operator page, ``/ui``: server-rendered HTML over the API's own reads and controls.

Sign in with a workyard token (``signin``); every page then acts as that token (``access``):
sagas and their controls (``sagas``), work items (``items``), and what spans every tenant: queues,
dead letters, mutex scopes (``ops``). Errors show as a page with their message
(``orchestrator.api.errors``), never a traceback nor the API's JSON.
"""
