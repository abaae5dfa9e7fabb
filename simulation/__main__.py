"""``python -m simulation`` is the ``cartsim`` command."""

import sys

from .cli import main

sys.exit(main())
