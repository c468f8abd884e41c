"""``python -m multiswarm ...`` is ``multiswarm-cli ...`` (role processes start this way)."""

from multiswarm.cli import main

main()
