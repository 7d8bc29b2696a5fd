"""``python -m streams.cli`` = ``evtwin``."""

import sys

from streams.cli import main

sys.exit(main())
