"""The CPU priority of local-process runs: their session as a whole, and each job.

Standard library only: the supervisor and the fork server import it.

Linux's autogroup scheduler shares the CPU between sessions. All of a home's
runs live in one session (see `local_forkserver`), which yields to the user's
other sessions (`RUNS_SESSION_NICE`); inside it each job runs at
`DEFAULT_JOB_NICE` unless its resource args say otherwise, behind the fork
server and the supervisors, which start runs and copy their output.
"""

from __future__ import annotations

import contextlib
import os
import time

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


def lower_job_priority(pid: int, increment: int) -> None:
    """Lower a just-started job's CPU priority by `increment`: every thread it has.

    Set from outside, right after the exec, not by a preexec_fn in the child: a
    preexec_fn makes Popen fork the supervisor instead of using vfork, which
    cost 1.7 ms of every dispatch. Linux keeps a niceness per thread, and a new
    thread copies its creator's: once the job's first thread is set, threads it
    starts have it too; any started in the microseconds before (a native
    program's static constructors, say) are set one by one. Best effort: a job
    that has already ended has nothing to set.
    """
    if not increment:
        return
    nice = min(19, os.getpriority(os.PRIO_PROCESS, 0) + increment)
    try:
        os.setpriority(os.PRIO_PROCESS, pid, nice)
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return
    for tid in threads:
        if int(tid) != pid:
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, int(tid), nice)


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
