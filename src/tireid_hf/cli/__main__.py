"""``python -m tireid_hf.cli``: the ``tireid`` command."""

import sys

from . import main

sys.exit(main())
