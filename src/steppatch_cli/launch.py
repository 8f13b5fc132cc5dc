"""The console script: the command line loaded with the garbage collector off.

Loading typer, click and the command line makes some hundred thousand objects and no garbage;
the cyclic collector would walk them again and again while they load (about a tenth of a
command's start, bench/startup_bench.py). So it is off until the command line is built; then
those objects are frozen out of its sight (``gc.freeze``: they live as long as the process) and
it runs as usual for the command itself, however long that runs (``mirror serve``).
"""

import gc


def main() -> None:
    """``steppatch``: run the command this process's arguments name."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        from steppatch_cli.app import command_for

        command, args = command_for()
    finally:
        gc.freeze()
        if collecting:
            gc.enable()
    command(args=args)
