"""``python -m optnas``: the ``optnas`` command."""

import sys

from optnas.cli import main

if __name__ == "__main__":
    sys.exit(main())
