"""Entry point: `sisearch [overrides]`, a Hydra app over the configs in `sisearch/conf/`.

Bad input (unknown names or keys, wrong types, missing files) ends the program before any work with exit
code 2 and one line `sisearch: error: ...` on stderr; a training failure (a non-finite loss) with code 1.
Inside a multirun (`sisearch -m ...`) a failing job raises instead: Hydra records it as failed and runs the
other jobs, then the program ends with code 1 naming the first failure. The task function returns the run's
objective (`objective:`, the last iteration's `eval/greedy/overall` by default) for sweepers such as Optuna.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import NoReturn

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException, MissingConfigException
from hydra.types import RunMode
from omegaconf import DictConfig
from omegaconf.errors import ConfigAttributeError, ConfigKeyError

from sisearch.plugin_configs import CONF_DIR
from sisearch.registry import ConfigError
from sisearch.run_dir import chosen_run_dir, record_outcome

BAD_INPUT_EXIT = 2
JOB_FAILED_EXIT = 1
PLUGIN_HINT = (
    "sweepers and launchers are Hydra plugins: pip install 'sisearch[sweeps]' (optuna) or 'sisearch[slurm]' (submitit)"
)


class JobFailed(Exception):
    """One job of a multirun failed; an Exception (not SystemExit), so Hydra records it and goes on."""


def config_dir() -> str:
    """`SISEARCH_CONFIG_DIR`, else the configs shipped inside the package (`sisearch/conf/`); a user's own
    directory *adds* groups and options with `--config-dir DIR` or `hydra.searchpath=[file://DIR]`."""
    path = Path(os.environ.get("SISEARCH_CONFIG_DIR") or CONF_DIR)
    if not (path / "config.yaml").is_file():
        raise SystemExit(f"sisearch: no config.yaml in {path}; set SISEARCH_CONFIG_DIR to a directory that has one")
    return str(path)


def one_line(text: str) -> str:
    return "; ".join(line.strip() for line in str(text).splitlines() if line.strip())


def fail(message: str, code: int) -> NoReturn:
    print(f"sisearch: error: {one_line(message)}", file=sys.stderr)
    raise SystemExit(code)


def hydra_error_message(err: HydraException) -> str:
    """Hydra's composition errors as one line that names the key or option and what is allowed."""
    cause = err.__cause__
    if isinstance(cause, (ConfigKeyError, ConfigAttributeError)) and cause.parent_node is not None:
        allowed = [str(k) for k in cause.parent_node.keys() if k != "hydra"]
        return (
            f"unknown config key '{cause.full_key}'; allowed keys there: {', '.join(allowed)} "
            f"(a new key needs a leading '+')"
        )
    text = str(err)
    if "hydra/sweeper" in text or "hydra/launcher" in text:
        return f"{plain_hydra_error(err, text)}; {PLUGIN_HINT}"
    return plain_hydra_error(err, text)


def plain_hydra_error(err: HydraException, text: str) -> str:
    if isinstance(err, MissingConfigException):
        text = text.split("Config search path:")[0]  # the search path is noise for a mistyped option
        head, _, options = text.partition("Available options in")
        if options:
            group, _, names = options.partition(":")
            return f"{one_line(head)}; available options in{group}: {', '.join(names.split())}"
    return one_line(text)


def launched_rank() -> int:
    """This process's rank under torchrun or SLURM tasks (0 otherwise), read before Hydra starts."""
    return int(os.environ.get("RANK") or os.environ.get("SLURM_PROCID") or 0)


def quiet_hydra_overrides(argv: list[str]) -> list[str]:
    """For the ranks other than 0: no `.hydra/` files and no log file of their own (rank 0 writes the run
    directory; their log lines still reach the console)."""
    extra = []
    if not any(a.startswith("hydra.output_subdir=") for a in argv):
        extra.append("hydra.output_subdir=null")
    if not any(a.startswith(("hydra/job_logging=", "hydra.job_logging")) for a in argv):
        extra.append("hydra/job_logging=stdout")
    return extra


def _main(cfg: DictConfig) -> float:
    from sisearch.loop import run
    from sisearch.objective import DEFAULT_OBJECTIVE, objective_value
    from sisearch.optim.base import NonFiniteLossError

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    hydra_dir = Path(HydraConfig.get().runtime.output_dir)
    marker_dir = outcome_dir(hydra_dir, cfg.get("resume"))
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        rows = run(cfg, hydra_dir)
        value = objective_value(rows, cfg.get("objective") or DEFAULT_OBJECTIVE)
    except (ConfigError, FileNotFoundError, ValueError) as err:
        job_failed(err, BAD_INPUT_EXIT, marker_dir, multirun)
    except NonFiniteLossError as err:
        job_failed(err, JOB_FAILED_EXIT, marker_dir, multirun)
    if launched_rank() == 0:
        record_outcome(marker_dir, None)
    return value


def outcome_dir(output_dir: Path, resume: str | None) -> Path:
    """Where the job's outcome (failed.txt) goes: the directory the run works in, so a resumed run marks and
    clears its own; Hydra's output directory when `resume` names no directory (that failure is the run's)."""
    run_dir = chosen_run_dir(output_dir, resume)
    return run_dir if run_dir.is_dir() else output_dir


def job_failed(err: Exception, code: int, output_dir: Path, multirun: bool) -> NoReturn:
    logging.getLogger("sisearch").error("%s", err)
    if launched_rank() == 0:
        record_outcome(output_dir, one_line(str(err)))
    if multirun:  # SystemExit would end the whole sweep at its first failing job
        raise JobFailed(f"{output_dir}: {one_line(str(err))}") from err
    fail(str(err), code)


def main() -> None:
    # Let Hydra's composition errors (mistyped keys, unknown options) reach us instead of being printed
    # as several lines with exit code 1; a user who set HYDRA_FULL_ERROR keeps their choice.
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    if launched_rank() > 0:
        sys.argv += quiet_hydra_overrides(sys.argv[1:])
    try:
        hydra.main(config_path=config_dir(), config_name="config", version_base="1.3")(_main)()
    except HydraException as err:
        fail(hydra_error_message(err), BAD_INPUT_EXIT)
    except JobFailed as err:  # raised by Hydra after the sweep's other jobs ran
        fail(f"a job of the multirun failed (the other jobs ran): {err}", JOB_FAILED_EXIT)


if __name__ == "__main__":
    main()
