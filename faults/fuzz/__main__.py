"""``python -m faults.fuzz``."""

import sys

from faults.fuzz.cli import main

sys.exit(main())
