"""Torch's intra-op threads per process: each process of a machine takes its share of the cores.

Two torch processes on the same cores, each running as many threads as there are cores, slow each other down
many times over (a search that took 7 s alone took 3.5 min beside another sisearch process): the threads spin
waiting for each other. So each rank of a distributed run, and each job of a parallel Hydra launcher (joblib),
runs cores / (processes on this machine) threads, unless the user chose: the `threads` config key first, then
`OMP_NUM_THREADS` (which torchrun sets to 1 for each process when it starts several and the variable is unset).
A process alone on its machine keeps torch's default.
"""

from __future__ import annotations

import logging
import os

import torch

log = logging.getLogger("sisearch")


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity: SLURM's and taskset's limits count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def thread_share(cores: int, processes: int) -> int:
    """Each of `processes` processes' share of `cores`, at least one thread."""
    return max(1, cores // max(1, processes))


def parallel_launcher_jobs() -> int:
    """Jobs that a Hydra launcher runs at once on this machine (joblib's n_jobs; 1 outside a parallel sweep).

    Submitit's jobs are not counted: SLURM gives each its own CPUs, which the affinity already shows.
    """
    try:
        from hydra.core.hydra_config import HydraConfig

        launcher = HydraConfig.get().launcher
    except (ImportError, ValueError):  # no Hydra app is running (unit tests, the API)
        return 1
    if "Joblib" not in str(launcher.get("_target_", "")):
        return 1
    n_jobs = int(launcher.get("n_jobs", 1) or 1)
    return available_cores() if n_jobs < 0 else n_jobs  # joblib's -1: as many jobs as cores


def choose_threads(configured: int | None, env: dict[str, str], local_processes: int,
                   cores: int) -> tuple[int | None, str]:
    """(threads, why): the config's `threads`, else OMP_NUM_THREADS, else this process's share of the cores when
    it shares them; None (torch's own choice) for a process alone on its machine."""
    if configured is not None:
        if configured < 1:
            raise ValueError(f"threads must be null or at least 1, got {configured}")
        return configured, "the threads setting"
    if env.get("OMP_NUM_THREADS", "").strip():
        return int(env["OMP_NUM_THREADS"]), "OMP_NUM_THREADS"
    if local_processes <= 1:
        return None, "torch's default"  # physical cores, which may be fewer than the affinity's logical ones
    return thread_share(cores, local_processes), f"{cores} cores shared by {local_processes} processes"


def set_threads(configured: int | None, local_processes: int) -> int:
    """Set torch's intra-op threads for this process; returns the count."""
    processes = local_processes * parallel_launcher_jobs()
    threads, why = choose_threads(configured, dict(os.environ), processes, available_cores())
    if threads is None:
        threads = torch.get_num_threads()
    elif torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    log.debug("torch intra-op threads: %d (%s)", threads, why)
    return threads


__all__ = ["available_cores", "thread_share", "choose_threads", "set_threads"]
