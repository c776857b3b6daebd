"""The threads a run computes on: how many, how they wait, and what the machine was doing.

The compiled engines' parallel loops run on numba's OpenMP threads. A batch of the log's model
opens several short parallel regions, and between them the threads wait. Measured on the 2-core
development machine (one epoch of block C_s=100, 2 threads; `results/benchmark/threads.md`):
waiting asleep (OMP_WAIT_POLICY=PASSIVE) costs a wake-up per region and made the epoch 8-14x slower
than spinning; spinning on a core that another process needs made it 2.5-14x slower than one
thread. So a run here

* spins briefly before sleeping (GOMP_SPINCOUNT=`SPIN`, set by `prepare` before numba starts its
  threads, unless OMP_WAIT_POLICY or GOMP_SPINCOUNT is already set), and
* never runs more numba threads than there are free cores when an epoch starts (`free_cores`):
  alone it uses them all, beside another busy process it takes what is left, so no thread spins on
  a busy core. A batch of `jobs` runs gives each run cores // jobs threads (`share_cores`).

The thread count changes no bit of any result (the kernels split only independent work); BLAS is
pinned to one thread while a run trains and evaluates (`run_threads`), because OpenBLAS's matrix
products round differently with 1, 2 or 3 threads (the krotov and reference engines use them).
"""
from __future__ import annotations

import os
import time
from contextlib import contextmanager

SPIN = "10000"  # GOMP_SPINCOUNT: ~10 microseconds of spinning, then sleep
BLAS_THREADS = 1
JOBS_ENV = "DREAMFLOW_JOBS"  # how many runs the batch runs side by side (set for its workers)


def prepare() -> None:
    """Choose how OpenMP threads wait, before numba starts them (a no-op once they run, or when the
    user set OMP_WAIT_POLICY or GOMP_SPINCOUNT)."""
    if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
        os.environ["GOMP_SPINCOUNT"] = SPIN


def cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def running_others(samples: int = 5) -> int | None:
    """Runnable threads on the machine besides the caller (the fewest of a few readings of
    /proc/loadavg, 1 ms apart); None where the system does not say."""
    counts = []
    for _ in range(samples):
        try:
            with open("/proc/loadavg") as f:
                counts.append(int(f.read().split()[3].split("/")[0]) - 1)
        except (OSError, ValueError, IndexError):
            return None
        time.sleep(0.001)
    return max(0, min(counts))


def free_cores() -> int:
    """Cores not busy with other work right now (at least 1)."""
    busy = running_others()
    return cores() if busy is None else max(1, cores() - busy)


def share_cores(jobs: int) -> int:
    """Give each of `jobs` runs side by side its share of the cores: sets the numba thread count
    of this process and (NUMBA_NUM_THREADS, DREAMFLOW_JOBS) of the processes it starts."""
    import numba

    prepare()
    n = max(1, min(numba.config.NUMBA_NUM_THREADS, cores() // max(1, jobs)))
    os.environ["NUMBA_NUM_THREADS"] = str(n)
    os.environ[JOBS_ENV] = str(jobs)
    numba.set_num_threads(n)
    return n


def load() -> dict:
    """What the machine was doing when a run started: cores, runs side by side (the batch's jobs),
    the 1-minute load average and the runnable threads besides this one."""
    try:
        loadavg = round(os.getloadavg()[0], 2)
    except OSError:
        loadavg = None
    return {"cores": cores(), "jobs": int(os.environ.get(JOBS_ENV, "1")), "loadavg": loadavg,
            "running_others": running_others()}


class RunThreads:
    """The thread counts of one run: `adapt()` before each epoch; `used` lists numba's per epoch."""

    def __init__(self):
        import numba

        self._numba = numba
        self.restore = numba.get_num_threads()
        # the caller's choice (set_num_threads), at most NUMBA_NUM_THREADS as the environment says now (a
        # batch worker's share: numba may have read its configuration before the worker's environment was set)
        env = os.environ.get("NUMBA_NUM_THREADS", "")
        self.cap = min(self.restore, int(env)) if env.isdigit() and int(env) > 0 else self.restore
        self.used: list[int] = []

    def adapt(self) -> int:
        n = self.cap if self.cap == 1 else min(self.cap, free_cores())
        self._numba.set_num_threads(n)
        self.used.append(n)
        return n

    def record(self) -> dict:
        return {"numba": sorted(set(self.used)) or [self.cap], "numba_cap": self.cap, "blas": BLAS_THREADS}


@contextmanager
def run_threads():
    """While a run trains: BLAS on `BLAS_THREADS`, numba threads adapted per epoch (`RunThreads`);
    both restored afterwards."""
    from threadpoolctl import threadpool_limits

    prepare()
    threads = RunThreads()
    try:
        with threadpool_limits(BLAS_THREADS, user_api="blas"):
            yield threads
    finally:
        threads._numba.set_num_threads(threads.restore)
