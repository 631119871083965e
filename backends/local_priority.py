"""The CPU priority of local-process runs: their session as a whole, and each job.

Standard library only: the supervisor and the fork server import it.

Linux's autogroup scheduler shares the CPU between sessions. All of a home's
runs live in one session (see `local_forkserver`), which yields to the user's
other sessions (`RUNS_SESSION_NICE`); inside it each job runs at
`DEFAULT_JOB_NICE` unless its resource args say otherwise, behind the fork
server and the supervisors, which start runs and copy their output.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

# The CPU priority of the session that holds a home's runs, all of them as one,
# against the user's other sessions: the agent's, a shell, the TUI. Linux's
# autogroup scheduler shares the CPU between sessions, but not evenly when one
# of them wakes constantly: 100 runs printing through their supervisors' pipes
# on 2 cores kept the agent, in its own session at the same priority, waiting
# for a core 60-90 % of the time, with 15 % of the CPU against the runs' 174 %.
# At 5 the other sessions weigh three times as much as the runs when both want
# the CPU; an otherwise idle machine still gives the runs all of it.
RUNS_SESSION_NICE = 5

# A job's niceness unless its resource args say otherwise (`nice`, 0 for none).
# Inside the runs' session it puts the fork server and the supervisors ahead of
# busy jobs; where the kernel does not share the CPU by session (no autogroup,
# or sessions in cgroups of their own), it also keeps busy jobs from crowding
# out the agent.
DEFAULT_JOB_NICE = 5


def niced(increment: int) -> Callable[[], None] | None:
    """What the job's child process runs before exec to lower its CPU priority."""
    if not increment:
        return None  # no preexec_fn: Popen keeps its faster vfork path
    return lambda: os.nice(increment)


def lower_session_priority(nice: int = RUNS_SESSION_NICE, tries: int = 1) -> bool:
    """Set the CPU priority of this process's session as a whole (its autogroup).

    Best effort, False when it could not be set: kernels without autogroup
    have no file to write, and the kernel refuses a user's change within 0.1 s
    of anyone else's (EAGAIN), which `tries` (0.1 s apart) waits out.
    """
    for attempt in range(tries):
        if attempt:
            time.sleep(0.11)
        try:
            with open("/proc/self/autogroup", "w") as group:
                group.write(str(nice))
            return True
        except BlockingIOError:
            continue
        except OSError:
            return False
    return False
