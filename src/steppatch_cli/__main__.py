"""``python -m steppatch_cli``."""

from steppatch_cli.app import main

main()
