"""`python -m trainyard_cli` is `kubectl trainyard`."""

import sys

from trainyard_cli.main import main

sys.exit(main())
