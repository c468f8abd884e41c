"""Defaults of the operations API that launchers need without importing the web stack (the
CLI imports this on every command; Starlette and uvicorn load only when ``run api`` runs)."""

from __future__ import annotations

#: Default port of the API (``run api --port``, ``up --api-port``).
DEFAULT_PORT = 8700
#: Longest a request waits for Redis to come back before it is answered 503, in seconds: an
#: HTTP client would rather hear "unavailable" than hang for the roles' 60 s reconnect budget.
API_RECONNECT_S = 5.0
