"""Argument checks shared by the repo's command lines (batch, reproduce, bench, studies).

Every check raises `CliError` (a ValueError) with a message that names the option and the
bad value; `run_cli` turns it into ONE line ``error: <message>`` on stderr and exit status 2,
without a traceback::

    from dreamflow_utils.sweeps.cli import ArgumentParser, CliError, parse_seeds, positive_int, run_cli

    @run_cli
    def main(argv=None):
        p = ArgumentParser(prog="python -m dreamflow_utils.thing")   # its usage errors: one line too
        p.add_argument("--seeds", default="0")
        p.add_argument("--jobs", default="1")
        args = p.parse_args(argv)
        seeds, jobs = parse_seeds(args.seeds), positive_int(args.jobs, "--jobs")
        ...
        return 0

`run_cli` also reports an OSError that names a file (full disk, read-only folder, missing
permission) as one line ``error: <path>: <problem>`` with status 2.
"""
from __future__ import annotations

import argparse
import ast
import functools
import re
import sys

__all__ = ["CliError", "ArgumentParser", "run_cli", "parse_seeds", "positive_int", "nonnegative_int",
           "parse_value", "parse_values", "parse_pairs", "describe_oserror"]

EXIT_USAGE = 2


class CliError(ValueError):
    """A bad command-line value or an environment problem to report as one line (exit status 2)."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage error raises CliError (one line via `run_cli`) instead of printing
    the usage and exiting; --help still prints and exits 0."""

    def error(self, message):
        raise CliError(f"{message} (see {self.prog} --help)")


def describe_oserror(e: OSError) -> str:
    """'<path>: <problem>' for an OSError (e.g. 'runs/x.json: No space left on device')."""
    problem = e.strerror or str(e) or type(e).__name__
    if e.filename is not None and e.filename2 is not None:
        return f"{e.filename} -> {e.filename2}: {problem}"
    return f"{e.filename}: {problem}" if e.filename is not None else problem


def run_cli(main_fn):
    """Decorator for ``main(argv=None) -> int``: CliError, or an OSError naming a file, becomes
    ``error: <message>`` on stderr (one line) and return value 2."""

    @functools.wraps(main_fn)
    def wrapper(*args, **kwargs):
        try:
            return main_fn(*args, **kwargs)
        except CliError as e:
            message = " ".join(str(e).split("\n"))  # one line, whatever the message
        except OSError as e:
            if e.filename is None:
                raise
            message = describe_oserror(e)
        sys.stdout.flush()
        print(f"error: {message}", file=sys.stderr, flush=True)
        return EXIT_USAGE

    return wrapper


# ----------------------------------------------------------------------------- numbers
def _int(text, name) -> int:
    s = str(text).strip()
    if not re.fullmatch(r"[+-]?\d+", s):
        raise CliError(f"{name}: expected a whole number, got {text!r}")
    return int(s)


def positive_int(text, name: str = "value") -> int:
    """'3' -> 3; refuses 0, negatives and anything not a whole number."""
    n = _int(text, name)
    if n < 1:
        raise CliError(f"{name}: must be at least 1, got {text!r}")
    return n


def nonnegative_int(text, name: str = "value") -> int:
    """'0' -> 0; refuses negatives and anything not a whole number."""
    n = _int(text, name)
    if n < 0:
        raise CliError(f"{name}: must be 0 or more, got {text!r}")
    return n


def parse_seeds(text, name: str = "--seeds") -> list[int]:
    """'0-4' -> [0, 1, 2, 3, 4]; '0,1,7' -> [0, 1, 7]; '0-2,7' -> [0, 1, 2, 7].

    Refuses an empty list or item, a reversed or open range ('4-0', '0-'), negative or
    non-integer seeds and seeds given twice."""
    s = str(text).strip()
    if not s:
        raise CliError(f"{name}: empty; expected e.g. 0-4, 0,1,7 or 0-2,7")
    seeds: list[int] = []
    for part in s.split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)(?:\s*-\s*(\d+))?", part)
        if not m:
            raise CliError(f"{name}: {part!r} in {text!r} is not a seed (0, 1, ...) or a range like 0-4")
        lo, hi = int(m.group(1)), int(m.group(2) if m.group(2) is not None else m.group(1))
        if hi < lo:
            raise CliError(f"{name}: range {part!r} in {text!r} is empty (write it low-high, e.g. {hi}-{lo})")
        seeds += range(lo, hi + 1)
    dup = sorted({x for x in seeds if seeds.count(x) > 1})
    if dup:
        raise CliError(f"{name}: seed(s) {', '.join(map(str, dup))} given twice in {text!r}")
    return seeds


# ----------------------------------------------------------------------------- values
def _balanced(s: str) -> bool:
    """Brackets and quotes balanced (quotes: ' and " outside the other kind)."""
    pairs, stack, quote = {")": "(", "]": "[", "}": "{"}, [], None
    for ch in s:
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            stack.append(ch)
        elif ch in ")]}":
            if not stack or stack.pop() != pairs[ch]:
                return False
    return not stack and quote is None


def parse_value(text, name: str = "value"):
    """A Python literal if it parses as one ('1000', '1e-3', 'True', '[1, 2]', "'a b'"), else
    the string itself ('adam'). Refuses an empty value and unbalanced brackets or quotes."""
    s = str(text).strip()
    if not s:
        raise CliError(f"{name}: empty value")
    if not _balanced(s):
        raise CliError(f"{name}: unbalanced brackets or quotes in {text!r}")
    try:
        return ast.literal_eval(s)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        if re.search(r"[()\[\]{}'\"]", s):
            raise CliError(f"{name}: {text!r} looks like a Python literal but does not parse") from None
        return s


def _split_top(s: str) -> list[str]:
    """Split on commas outside brackets and quotes."""
    parts, depth, quote, cur = [], 0, None, []
    for ch in s:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    parts.append("".join(cur))
    return parts


def parse_values(text, name: str = "value") -> list:
    """'10,20' -> [10, 20]; 'adam,sgd' -> ['adam', 'sgd']; '0.5' -> [0.5]; '[1,2],[3]' -> [[1, 2], [3]].

    Refuses an empty list, an empty item ('10,,20', '10,'), unbalanced brackets ('[10,20')
    and values given twice."""
    s = str(text).strip()
    if not s:
        raise CliError(f"{name}: empty list of values")
    if not _balanced(s):
        raise CliError(f"{name}: unbalanced brackets or quotes in {text!r}")
    items = _split_top(s)
    if any(not item.strip() for item in items):
        raise CliError(f"{name}: empty item in {text!r}")
    values = [parse_value(item, name) for item in items]
    for i, v in enumerate(values):
        if any(type(v) is type(w) and v == w for w in values[:i]):
            raise CliError(f"{name}: value {v!r} given twice in {text!r}")
    return values


def parse_pairs(items, name: str = "--param") -> dict[str, str]:
    """['a=1', 'b=x,y'] -> {'a': '1', 'b': 'x,y'} (values unparsed, in order).

    Each item must be NAME=VALUE with NAME a Python identifier; refuses a name given twice
    and an empty value."""
    out: dict[str, str] = {}
    for item in items:
        key, eq, value = str(item).partition("=")
        key = key.strip()
        if not eq or not key.isidentifier():
            raise CliError(f"{name}: expected NAME=VALUE, got {item!r}")
        if not value.strip():
            raise CliError(f"{name}: empty value in {item!r}")
        if key in out:
            raise CliError(f"{name}: {key!r} given twice ({key}={out[key]} and {item})")
        out[key] = value
    return out
