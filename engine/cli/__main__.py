"""`python -m engine.cli`: the `flowkernel` command."""

import sys

from engine.cli.command import main

sys.exit(main())
