"""`python -m biounet` and the `biounet` command."""


def run() -> None:
    from biounet.cli import main

    main(prog_name="biounet")


if __name__ == "__main__":
    run()
