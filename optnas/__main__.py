"""``python -m optnas``: the ``optnas`` command."""

import sys

from optnas.cli import main

sys.exit(main())
