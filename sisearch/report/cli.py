"""`sisearch-report DIR... [--out OUT] [--metric M]`: a Markdown and a CSV table and PNG plots of the runs.

DIR is a run directory or any directory above runs (a multirun's sweep directory, `multirun/`). The runs are
grouped by the settings that vary between them; failed and unfinished runs are listed, not averaged in.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sisearch.report.runs import read_runs
from sisearch.report.table import configurations, markdown, split_finished, summarise, write_csv

MARKDOWN_FILE = "report.md"
CSV_FILE = "report.csv"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="sisearch-report", description=__doc__.split("\n\n")[0])
    parser.add_argument("dirs", nargs="+", type=Path, help="run or multirun directories")
    parser.add_argument("--out", type=Path, default=None, help="where to write (default: DIR/report, the first DIR)")
    parser.add_argument("--metric", default="eval/greedy/overall", help="the metric the plots show")
    return parser.parse_args(argv)


def report(dirs: list[Path], out: Path, metric: str) -> list[Path]:
    """Write the tables and plots into `out`; returns the files written."""
    from sisearch.report.plots import write_plots  # matplotlib only when plotting

    finished, left_out = split_finished(read_runs(dirs))
    if not finished:
        raise ValueError(f"no finished run under {', '.join(map(str, dirs))} ({len(left_out)} failed or unfinished)")
    configs = configurations(finished)
    keys, summaries = summarise(configs)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKDOWN_FILE).write_text(markdown(keys, summaries, left_out))
    write_csv(out / CSV_FILE, keys, summaries)
    return [out / MARKDOWN_FILE, out / CSV_FILE, *write_plots(configs, metric, out)]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = args.out or args.dirs[0] / "report"
    try:
        written = report(args.dirs, out, args.metric)
    except (FileNotFoundError, ValueError) as err:
        print(f"sisearch-report: error: {err}", file=sys.stderr)
        return 2
    print(written[0].read_text())
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
