"""`python -m biounet` and the `biounet` command: restart under jemalloc if present, then run the CLI."""

import sys


def run() -> None:
    from biounet.runtime import use_jemalloc

    use_jemalloc(sys.argv[1:])
    from biounet.cli import main

    main(prog_name="biounet")


if __name__ == "__main__":
    run()
