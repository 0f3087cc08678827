"""The command line every benchmark module shares: parse its options, measure, save the result
as bench/results/<name>-latest.json and print it as a Markdown table."""

import argparse
from collections.abc import Callable
from typing import Any

from bench import report
from bench.common import save_result
from bench.processes import exit_on_sigterm


def run(
    name: str,
    parser: argparse.ArgumentParser,
    measure: Callable[[argparse.Namespace], dict[str, Any]],
) -> None:
    args = parser.parse_args()
    exit_on_sigterm()
    outcome = measure(args)
    save_result(name, outcome)
    print(report.table([outcome]) + report.notes([outcome]))
