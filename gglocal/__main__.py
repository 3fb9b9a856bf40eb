"""Entry point: ``python -m gglocal``."""

import sys

from gglocal.cli import main

if __name__ == "__main__":
    sys.exit(main())
