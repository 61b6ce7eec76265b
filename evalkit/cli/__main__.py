"""``python -m evalkit.cli``: the ``evalkit`` command."""

import sys

from . import main

sys.exit(main())
