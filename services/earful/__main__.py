"""`python -m earful` = the `earful` command."""

import sys

from earful.cli import main

sys.exit(main())
