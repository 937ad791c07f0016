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


def _wrapped(error: BaseException) -> RuntimeError:
    """``error`` as MONAI re-raises it from a config expression."""
    try:
        try:
            raise error
        except Exception as inner:
            raise RuntimeError("Failed to evaluate ConfigExpression: ...") from inner
    except RuntimeError as outer:
        return outer


def test_a_user_error_is_found_inside_the_wrappers(tmp_path) -> None:
    from lungmonai.cache.crops import CacheCorruptError, CacheMissError
    from lungmonai.usererrors import user_error_in

    crops = tmp_path / "crops.npy"
    crops.write_bytes(b"")
    corrupt = CacheCorruptError(f"{crops}: crop 3 differs")
    assert user_error_in(_wrapped(corrupt)) == f"{crops}: crop 3 differs"
    assert user_error_in(_wrapped(FileNotFoundError(f"{tmp_path}/prepared: missing split.json"))) == (
        f"{tmp_path}/prepared: missing split.json")
    assert user_error_in(CacheMissError(f"{tmp_path}: no complete cache entry")) == f"{tmp_path}: no complete cache entry"
    # a DataLoader worker's error reaches the main process as its traceback's text
    worker = RuntimeError("Caught RuntimeError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n"
                          '  File "x.py", line 1, in f\n'
                          f"lungmonai.cache.crops.CacheCorruptError: {crops}: crop 3 differs\n\n"
                          "The above exception was the direct cause of the following exception:\n\n"
                          "RuntimeError: applying transform <LoadCandidateCropd>\n")
    assert user_error_in(_wrapped(worker)) == f"{crops}: crop 3 differs"


def test_bugs_inside_the_wrappers_stay_bugs(tmp_path) -> None:
    from lungmonai.usererrors import user_error_in

    assert user_error_in(_wrapped(KeyError("x"))) is None
    assert user_error_in(_wrapped(ValueError("operands could not be broadcast"))) is None
    assert user_error_in(RuntimeError(f"lungmonai.nope.Error: {tmp_path}: made up")) is None  # no such class loaded
    try:  # raised while handling a user error, not wrapping it
        try:
            raise FileNotFoundError(f"{tmp_path}/x: missing")
        except FileNotFoundError:
            raise TypeError("a bug in the handler")
    except TypeError as bug:
        assert user_error_in(bug) is None


def test_the_hook_prints_one_line_for_user_errors_and_keeps_tracebacks_for_bugs(tmp_path, monkeypatch, capsys) -> None:
    import sys

    from lungmonai.usererrors import install_hook

    seen = []
    monkeypatch.setattr(sys, "excepthook", lambda *info: seen.append(info[1]))
    install_hook("prog")
    install_hook("other")  # a second install keeps the first
    error = _wrapped(FileNotFoundError(f"{tmp_path}/prepared: missing split.json"))
    sys.excepthook(type(error), error, None)
    assert capsys.readouterr().err == f"prog: error: {tmp_path}/prepared: missing split.json\n" and not seen
    bug = _wrapped(KeyError("x"))
    sys.excepthook(type(bug), bug, None)
    assert seen == [bug] and capsys.readouterr().err == ""
