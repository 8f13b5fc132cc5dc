"""``python -m steppatch_cli``."""

from steppatch_cli.launch import main

main()
