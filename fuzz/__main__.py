"""``python -m fuzz``: the ``vmafuzz`` command line."""

import sys

from fuzz.cli import main

sys.exit(main())
