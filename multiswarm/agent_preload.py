"""Imported once by the agents' fork server (:mod:`multiswarm.agent_start`): the agent runtime
and the worker's handler modules, so each agent forked from it starts with them loaded.

Every failure is swallowed: the fork server must serve whatever a handler module does at
import, and each agent imports a module missing here again itself, reporting its error."""

from __future__ import annotations

import contextlib
import importlib
import os

import multiswarm.agent_runtime  # noqa: F401 - what every agent runs
from multiswarm.agent_start import PRELOAD_ENV
from multiswarm.handlers import DEFAULT_IMPORTS

for _module in [*DEFAULT_IMPORTS, *filter(None, os.environ.get(PRELOAD_ENV, "").split(","))]:
    with contextlib.suppress(BaseException):
        importlib.import_module(_module)
