"""The command line's one error convention: an error of this package (or OSError) is one
`error: …` line and exit status 2; anything else is a bug and keeps its traceback."""

from __future__ import annotations

import argparse
from typing import Callable

import pytest

from . import __main__ as cli
from .errors import OciError, RegistryTimeout
from .name import InvalidReference
from .spec import SpecError

COMPARE = ["compare", "--first", "a", "--second", "b"]


def _raising(error: BaseException) -> Callable[[argparse.Namespace], None]:
    def run(args: argparse.Namespace) -> None:
        raise error

    return run


@pytest.mark.parametrize(
    "error",
    [OciError("root"), InvalidReference("bad name"), RegistryTimeout("slow"), SpecError("spec")],
)
def test_errors_of_the_package_are_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, error: OciError
) -> None:
    monkeypatch.setattr(cli, "run_compare", _raising(error))
    assert cli.main(COMPARE) == 2
    assert capsys.readouterr().err == f"error: {error}\n"


def test_other_errors_are_not_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "run_compare", _raising(KeyError("bug")))
    with pytest.raises(KeyError):
        cli.main(COMPARE)


def test_flags_argparse_cannot_check_together_are_reported_as_argparse_does(
    capsys: pytest.CaptureFixture,
) -> None:
    with pytest.raises(SystemExit) as exit:
        cli.main(["image", "--spec", "spec.json"])
    assert exit.value.code == 2
    assert capsys.readouterr().err.endswith(
        ": error: image: give --metadata, and --output if an archive is wanted\n"
    )
