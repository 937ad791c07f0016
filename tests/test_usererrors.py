"""User errors print one line naming the file; bugs keep their tracebacks."""

from __future__ import annotations

import pytest

from lungmonai.io.errors import CTReadError
from lungmonai.usererrors import run_command, user_error_line


def test_os_errors_name_their_file(tmp_path) -> None:
    try:
        open(tmp_path, "w")
    except IsADirectoryError as error:
        assert user_error_line(error) == f"{tmp_path}: Is a directory"


def test_errors_that_start_with_a_path_are_user_errors(tmp_path) -> None:
    csv = tmp_path / "candidates.csv"
    csv.write_text("x")
    assert user_error_line(ValueError(f"{csv}: column 'coordX' has 1 value(s)\nthat are not numbers")) == (
        f"{csv}: column 'coordX' has 1 value(s) that are not numbers")
    assert user_error_line(ValueError(f"{tmp_path}/missing.csv: no such file")) is not None
    assert user_error_line(CTReadError(tmp_path / "ct.mhd", "broken")) == f"{tmp_path / 'ct.mhd'}: broken"


def test_bugs_are_not_user_errors() -> None:
    assert user_error_line(ValueError("operands could not be broadcast together: (3,) (4,)")) is None
    assert user_error_line(KeyError("x")) is None

    def buggy() -> int:
        raise ValueError("too many values to unpack (expected 2)")

    with pytest.raises(ValueError, match="too many values"):
        run_command("prog", buggy)


def test_run_command_prints_one_line_and_returns_1(tmp_path, capsys) -> None:
    def fails() -> int:
        raise FileNotFoundError(2, "No such file or directory", str(tmp_path / "nope.csv"))

    assert run_command("prog.py", fails) == 1
    err = capsys.readouterr().err
    assert err == f"prog.py: error: {tmp_path / 'nope.csv'}: No such file or directory\n"
