"""``python -m asyncx``: the same as the ``asyncx`` command."""

import sys

from ._cli import main

sys.exit(main())
