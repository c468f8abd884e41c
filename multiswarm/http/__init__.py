"""The operations surface: a JSON API with bearer-token auth, Prometheus ``/metrics`` and a live
dashboard, one ASGI app (Starlette on uvicorn) over the :class:`~multiswarm.Multiswarm` facade.

It has no Redis access of its own: every route is one facade call, so any number of replicas
answer the same. Start it with ``multiswarm-cli run api`` (see README, "Operations").

Modules: :mod:`~multiswarm.http.auth` (tokens, bind policy), :mod:`~multiswarm.http.replies`
(bodies, replies, error mapping), :mod:`~multiswarm.http.routes` (the ``/api/v1`` table),
:mod:`~multiswarm.http.metrics`, :mod:`~multiswarm.http.openapi`, :mod:`~multiswarm.http.app`
(the Starlette app) and :mod:`~multiswarm.http.server` (uvicorn). Nothing is imported here, so
importing one of them does not import the web stack.
"""
