"""``python -m nullswap``: the command-line tool where the ``nullswap`` script is not installed (a checkout)."""

from nullswap.cli.main import app

if __name__ == "__main__":
    app()
