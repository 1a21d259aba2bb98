"""`python -m flowkernel.cli`: the `flowkernel` command, as `python -m flowkernel`."""

import sys

from flowkernel.cli.command import main

sys.exit(main())
