"""``python -m s2ssm``: the command line."""

import sys

from s2ssm.cli import main

sys.exit(main())
