"""A test hook that kills the process at a named point, so that tests can check what a kill there
leaves behind (``kill -9`` at a STATE, not after a sleep).

Set ``TIREID_TEST_KILL_AT`` to a point name, or ``name:step`` for one global step of a training, e.g.
``checkpoint_written:4`` (a checkpoint folder is complete but not renamed yet), ``checkpoint_pruning``,
``final_move``, ``training_step:3``, or one of the steps of an output folder's replacement
(:data:`tireid_hf.files.REPLACE_STEPS`). Unset (always, outside tests) it does nothing.
"""

from __future__ import annotations

import os
import signal

KILL_AT_ENV = "TIREID_TEST_KILL_AT"


def kill_point(name: str, step: int | None = None) -> None:
    """SIGKILL this process if ``TIREID_TEST_KILL_AT`` is ``name`` or ``name:step``."""
    wanted = os.environ.get(KILL_AT_ENV)
    if wanted and wanted in (name, f"{name}:{step}"):
        os.kill(os.getpid(), signal.SIGKILL)
