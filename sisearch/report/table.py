"""Runs grouped into configurations (the settings that vary between runs, seeds aside), summarised over seeds.

A configuration's settings are Hydra's overrides when every run has them (`optimizer=sft`, as typed),
else the keys of the resolved configs that differ. The seed is the replicate axis: a row of the table is one
configuration, its numbers the mean and the spread (sample standard deviation) over its seeds.
"""

from __future__ import annotations

import csv
import statistics
from dataclasses import dataclass
from pathlib import Path
from sisearch.report.runs import Run
from sisearch.run_dir import display_only

ACCURACY = "eval/greedy/"  # the final accuracy columns: eval/greedy/<difficulty> and eval/greedy/overall
TOKEN_METRICS = ("search/generated_tokens", "train/generated_tokens")  # score samples while training too
SECONDS = "iteration/seconds"
MISSING = "(default)"


@dataclass
class Stat:
    mean: float
    sd: float | None  # None with a single run

    def markdown(self, digits: int) -> str:
        return f"{self.mean:.{digits}f}" + ("" if self.sd is None else f" ± {self.sd:.{digits}f}")


def stat(values: list[float]) -> Stat:
    return Stat(statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None)


@dataclass
class Configuration:
    settings: dict[str, str]  # only the settings that vary between the reported runs
    runs: list[Run]

    @property
    def label(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.settings.items()) or "all runs"

    @property
    def seeds(self) -> list[int]:
        return sorted(run.seed for run in self.runs)


def generated_tokens(run: Run, upto: int | None = None) -> float:
    """Tokens the run generated for search (and on-policy training) in iterations 1..upto."""
    return sum(float(row.get(k, 0.0)) for row in run.rows[: None if upto is None else upto + 1] for k in TOKEN_METRICS)


def seconds(run: Run) -> float:
    return sum(float(row.get(SECONDS, 0.0)) for row in run.rows)


def chosen_settings(run: Run, from_overrides: bool) -> dict[str, str]:
    if from_overrides:
        chosen = dict(run.overrides or {})
    else:
        # keys that merely follow the seed (`task.seed: ${seed}`) vary with it and are not settings
        chosen = {k: str(v) for k, v in run.config.items() if not (k.endswith(".seed") and v == run.seed)}
    return {k: v for k, v in chosen.items() if k != "seed" and not k.startswith("hydra.") and not display_only(k)}


def configurations(runs: list[Run]) -> list[Configuration]:
    """The runs grouped by the values of the settings that vary between them, in the order first seen."""
    from_overrides = all(run.overrides is not None for run in runs)
    chosen = [chosen_settings(run, from_overrides) for run in runs]
    keys = sorted({k for c in chosen for k in c})
    varying = [k for k in keys if len({c.get(k, MISSING) for c in chosen}) > 1]
    groups: dict[tuple[str, ...], Configuration] = {}
    for run, settings in zip(runs, chosen):
        values = tuple(settings.get(k, MISSING) for k in varying)
        groups.setdefault(values, Configuration(dict(zip(varying, values)), [])).runs.append(run)
    return list(groups.values())


def accuracy_keys(configs: list[Configuration]) -> list[str]:
    """eval/greedy/<difficulty> of the last rows, `overall` last."""
    keys = {k for c in configs for run in c.runs for k in run.rows[-1] if k.startswith(ACCURACY)}
    return sorted(keys, key=lambda k: (k.endswith("/overall"), k))


@dataclass
class Summary:
    config: Configuration
    accuracy: dict[str, Stat]  # final accuracy per key of accuracy_keys
    tokens: Stat  # generated tokens over the whole run
    seconds: Stat  # the iterations' wall time (search, training, evaluation)


def summarise(configs: list[Configuration]) -> tuple[list[str], list[Summary]]:
    keys = accuracy_keys(configs)
    summaries = [
        Summary(
            config,
            {k: stat([float(run.rows[-1][k]) for run in config.runs if k in run.rows[-1]]) for k in keys},
            stat([generated_tokens(run) for run in config.runs]),
            stat([seconds(run) for run in config.runs]),
        )
        for config in configs
    ]
    return keys, summaries


def short(key: str) -> str:
    return key.removeprefix(ACCURACY)


def markdown(keys: list[str], summaries: list[Summary], left_out: list[Run]) -> str:
    settings = list(summaries[0].config.settings) if summaries else []
    header = [*settings, "seeds", *[short(k) for k in keys], "generated tokens", "seconds"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for s in summaries:
        cells = [
            *[f"`{v}`" for v in s.config.settings.values()],
            ", ".join(map(str, s.config.seeds)),
            *[s.accuracy[k].markdown(2) if k in s.accuracy else "-" for k in keys],
            s.tokens.markdown(0),
            s.seconds.markdown(1),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    text += (
        "\nFinal greedy held-out accuracy per difficulty (the last iteration), mean ± standard deviation over "
        "seeds; generated tokens and seconds (the iterations' wall time) are per run, mean ± sd.\n"
    )
    if left_out:
        listed = "".join(f"- `{run.directory}`: {outcome(run)}\n" for run in left_out)
        text += f"\nLeft out (failed or unfinished):\n\n{listed}"
    return text


def outcome(run: Run) -> str:
    if run.failed:
        return run.failed
    return f"unfinished after iteration {run.rows[-1]['iteration']}" if run.rows else "no finished iteration"


def write_csv(path: Path, keys: list[str], summaries: list[Summary]) -> None:
    settings = list(summaries[0].config.settings) if summaries else []
    columns = [*settings, "seeds", "runs"]
    for name in [*map(short, keys), "generated_tokens", "seconds"]:
        columns += [f"{name}_mean", f"{name}_sd"]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for s in summaries:
            stats = [*(s.accuracy.get(k) for k in keys), s.tokens, s.seconds]
            writer.writerow([
                *s.config.settings.values(), " ".join(map(str, s.config.seeds)), len(s.config.runs),
                *[x for st in stats for x in (("", "") if st is None else (st.mean, "" if st.sd is None else st.sd))],
            ])


def split_finished(runs: list[Run]) -> tuple[list[Run], list[Run]]:
    return [r for r in runs if r.finished], [r for r in runs if not r.finished]
