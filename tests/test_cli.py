"""Tests for dreamflow_utils.sweeps.cli: the argument checks every command line of the repo shares."""
import errno

import pytest

from dreamflow_utils.sweeps import cli as C
from dreamflow_utils.sweeps.cli import CliError


def test_parse_seeds():
    assert C.parse_seeds("0-4") == [0, 1, 2, 3, 4]
    assert C.parse_seeds("0,1,7") == [0, 1, 7]
    assert C.parse_seeds("0-2,7") == [0, 1, 2, 7]
    assert C.parse_seeds(" 3 ") == [3] and C.parse_seeds("5-5") == [5]
    for bad, words in [("4-0", "empty"), ("0-", "not a seed"), ("", "empty"), ("a", "not a seed"),
                       ("-1", "not a seed"), ("0,,1", "not a seed"), ("1.5", "not a seed"),
                       ("0,0", "twice"), ("0-2,2", "twice")]:
        with pytest.raises(CliError, match=words) as e:
            C.parse_seeds(bad)
        assert "--seeds" in str(e.value) and "\n" not in str(e.value)


def test_ints():
    assert C.positive_int("3", "--jobs") == 3 and C.nonnegative_int("0", "--retries") == 0
    for bad in ["0", "-1", "x", "", "1.5", "2e3"]:
        with pytest.raises(CliError, match="--jobs"):
            C.positive_int(bad, "--jobs")
    with pytest.raises(CliError, match="--retries: must be 0 or more"):
        C.nonnegative_int("-1", "--retries")


def test_parse_value_and_values():
    assert C.parse_value("1000") == 1000 and C.parse_value("1e-3") == 0.001
    assert C.parse_value("True") is True and C.parse_value("adam") == "adam" and C.parse_value("None") is None
    assert C.parse_value("[1, 2]") == [1, 2] and C.parse_value("'a b'") == "a b"
    assert C.parse_values("10,20") == [10, 20]
    assert C.parse_values("adam,sgd") == ["adam", "sgd"]
    assert C.parse_values("0.5") == [0.5]
    assert C.parse_values("[1,2],[3]") == [[1, 2], [3]]
    assert C.parse_values("'a,b',c") == ["a,b", "c"]
    assert C.parse_values("1,1.0") == [1, 1.0]  # different values (and run ids)
    for bad, words in [("", "empty"), ("10,,20", "empty item"), ("10,", "empty item"), (",10", "empty item"),
                       ("[10,20", "unbalanced"), ("10]", "unbalanced"), ("'abc", "unbalanced"),
                       ("10,10", "twice"), ("f(1)", "does not parse")]:
        with pytest.raises(CliError, match=words):
            C.parse_values(bad, "--grid C_s")
    with pytest.raises(CliError, match="empty value"):
        C.parse_value("  ")


def test_parse_pairs():
    assert C.parse_pairs(["a=1", "b=x,y", "c=k=v"]) == {"a": "1", "b": "x,y", "c": "k=v"}
    for bad, words in [(["a"], "NAME=VALUE"), (["=1"], "NAME=VALUE"), (["1a=2"], "NAME=VALUE"),
                       (["a="], "empty value"), (["a=1", "a=2"], "given twice")]:
        with pytest.raises(CliError, match=words) as e:
            C.parse_pairs(bad, "--grid")
        assert str(e.value).startswith("--grid")


def test_run_cli_one_line_and_status_2(capsys):
    @C.run_cli
    def main(argv=None):
        p = C.ArgumentParser(prog="prog")
        p.add_argument("--jobs", default="1")
        p.add_argument("--what", default="ok")
        args = p.parse_args(argv)
        C.positive_int(args.jobs, "--jobs")
        if args.what == "disk":
            raise OSError(errno.ENOSPC, "No space left on device", "runs/x.json")
        if args.what == "multi":
            raise CliError("first line\nsecond line")
        if args.what == "bug":
            raise KeyError("a bug is not hidden")
        return 0

    assert main([]) == 0
    for argv, expected in [(["--jobs", "0"], "error: --jobs: must be at least 1, got '0'"),
                           (["--nope"], "error: unrecognized arguments: --nope (see prog --help)"),
                           (["--what", "disk"], "error: runs/x.json: No space left on device"),
                           (["--what", "multi"], "error: first line second line")]:
        assert main(argv) == 2
        out, err = capsys.readouterr()
        assert err == expected + "\n" and out == ""
    with pytest.raises(KeyError):
        main(["--what", "bug"])
    with pytest.raises(SystemExit) as e:  # --help still prints and exits 0
        main(["--help"])
    assert e.value.code == 0 and "--jobs" in capsys.readouterr().out


def test_describe_oserror():
    assert C.describe_oserror(OSError(errno.EROFS, "Read-only file system", "/r")) == "/r: Read-only file system"
    assert C.describe_oserror(OSError(errno.EXDEV, "Invalid cross-device link", "a", None, "b")) \
        == "a -> b: Invalid cross-device link"
    assert C.describe_oserror(OSError(errno.ENOSPC, "No space left on device")) == "No space left on device"
