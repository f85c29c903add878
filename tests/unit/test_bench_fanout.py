"""The fan-out benchmark's command line, and its wait for the stage 2 instances."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.fanout import QUICK, STANDARD, read_command_line
from bench.fanoutinstances import _join


def test_no_options_is_the_standard_plan() -> None:
    plan, out = read_command_line([])

    assert plan == STANDARD
    assert out.name == "fanout.json"


def test_quick_is_the_quick_plan() -> None:
    plan, _ = read_command_line(["--quick"])

    assert plan == QUICK


def test_sizes_and_runs_make_a_custom_plan_keeping_the_rest() -> None:
    plan, out = read_command_line(["--sizes", "100000", "--runs", "3", "--out", "x/f.json"])

    assert plan.sizes == (100_000,)
    assert plan.runs == 3
    assert plan.budget_s == STANDARD.budget_s
    assert plan.name == "custom"
    assert out == Path("x/f.json")


def test_budget_alone_keeps_the_quick_sizes() -> None:
    plan, _ = read_command_line(["--quick", "--budget", "90"])

    assert plan.sizes == QUICK.sizes
    assert plan.budget_s == 90


@pytest.mark.parametrize("value", ["0", "-3", "many", "2.5"])
def test_a_count_that_is_not_above_zero_is_refused_naming_the_option(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        read_command_line(["--runs", value])

    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert "--runs" in error
    assert "whole number above zero" in error


class _Process:
    """A stand-in for an instance process: alive until it has an exit code."""

    def __init__(self, exitcode: int | None) -> None:
        self.exitcode = exitcode

    def is_alive(self) -> bool:
        return self.exitcode is None


def test_the_wait_ends_when_one_instance_fails_while_another_still_runs() -> None:
    """A failed instance ends the wait: the other would wait forever for its pages."""
    running, failed = _Process(None), _Process(1)

    _join([running, failed])  # type: ignore[list-item]

    assert running.is_alive()
