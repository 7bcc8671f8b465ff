"""`python -m engagement` is the `engagement` command."""

import sys

from engagement.cli import main

sys.exit(main())
