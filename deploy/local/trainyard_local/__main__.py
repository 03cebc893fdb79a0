"""`python -m trainyard_local up|down|status`: see cli.py."""

from trainyard_local.cli import main

if __name__ == "__main__":
    main()
