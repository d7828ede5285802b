"""``python -m nsnn.training train --dataset NAME [flags]`` or ``... test --snapshot PATH [flags]``."""

import sys

from nsnn.training.cli import main

sys.exit(main())
