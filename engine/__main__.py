"""`python -m flowkernel`: the `flowkernel` command."""

import sys

from flowkernel.cli.command import main

sys.exit(main())
