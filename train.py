"""Train any method of the zoo: ``accelerate launch train.py --config configs/<method>_<dataset>.yaml``.

Any argument of the config can be overridden on the command line (``--max_steps 20``); see
``python train.py --help``. The loop itself lives in :mod:`tireid_hf.training`.
"""

import sys

from tireid_hf.training import command_line_main

if __name__ == "__main__":
    sys.exit(command_line_main())
