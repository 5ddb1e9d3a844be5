"""``python -m attnlab.bench NAME ...`` is ``attnlab bench NAME ...``."""

import sys

from attnlab.cli import main

sys.exit(main(["bench", *sys.argv[1:]]))
