"""``python -m multiswarm ...`` is ``multiswarm-cli ...`` (role processes start this way)."""

import sys

from multiswarm import agent_server

if agent_server.starts_worker(sys.argv[1:]):
    # before the CLI's imports (~0.4 s): the agents' server starts meanwhile (decision 59)
    agent_server.start()

from multiswarm.cli import main

main()
