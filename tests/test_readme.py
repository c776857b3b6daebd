"""README.md tells the truth: every code block runs (or, where marked, a cheap form of it does), the
findings block is what `dreamflow_utils.studies.findings` renders from results/, and the links, paths,
modules and anchors it names exist.

A block is run as it is unless an HTML comment on the line before its fence says otherwise:

    <!-- readme-test: dry-run -->      too long for CI: each command with --dry-run (a script: DRY_RUN=1)
    <!-- readme-test: help -->         too long, or it writes results/: each command with --help
    <!-- readme-test: syntax -->       CI itself, or needs a cluster: the block parses (bash -n, compile) and
                                       every program, module and repository path it names exists
    <!-- readme-test: needs-mnist -->  run it; skipped where MNIST is not available

Python blocks run in one child process, each in a fresh namespace, in a temporary folder that links the
repository's notebooks/ and results/. Shell commands `python -m dreamflow_utils...` run in this process
(runpy: no interpreter start per command), the others in bash, from the repository root.
"""
from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import re
import runpy
import shlex
import shutil
import subprocess
import sys
import textwrap
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import REAL_MNIST

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
MODES = ("run", "dry-run", "help", "syntax", "needs-mnist")
SHELL, PYTHON = ("bash", "sh", "shell"), ("python",)
MARK = re.compile(r"^<!--\s*readme-test:\s*(\S+)\s*-->$")
FENCE = re.compile(r"^```(\S*)\s*$")
REPO_DIRS = ("notebooks/", "results/", "scripts/", "tests/", "dreamflow_utils/", "figures/", ".ci/")
BUILTINS = ("export", "cd", "source", ".", "echo", "true")


@dataclass(frozen=True)
class Block:
    line: int  # of the opening fence, 1-based
    lang: str
    code: str
    mode: str

    @property
    def id(self) -> str:
        first = next((ln for ln in self.code.splitlines() if ln.strip() and not ln.startswith("#")), "")
        return f"L{self.line}-{self.lang}-{self.mode}-{first[:40]}"


def parse_blocks(text: str) -> list[Block]:
    lines, blocks, i = text.splitlines(), [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        j = next(k for k in range(i + 1, len(lines)) if lines[k].strip() == "```")
        k = i - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        mark = MARK.match(lines[k].strip()) if k >= 0 else None
        blocks.append(Block(i + 1, m.group(1), "\n".join(lines[i + 1:j]) + "\n", mark.group(1) if mark else "run"))
        i = j + 1
    return blocks


TEXT = README.read_text()
BLOCKS = parse_blocks(TEXT)
PY_BLOCKS = [b for b in BLOCKS if b.lang in PYTHON]
SH_BLOCKS = [b for b in BLOCKS if b.lang in SHELL]


# ----------------------------------------------------------------------------- shell commands
def logical_lines(code: str) -> list[str]:
    """The block's command lines: continuation lines joined, comment-only lines dropped."""
    out, cur = [], ""
    for raw in code.splitlines():
        if raw.rstrip().endswith("\\"):
            cur += raw.rstrip()[:-1] + " "
            continue
        cur += raw
        if shlex.split(cur, comments=True):
            out.append(cur)
        cur = ""
    return out


def tokens(line: str) -> list[str]:
    lex = shlex.shlex(line, posix=True, punctuation_chars=True)
    lex.whitespace_split = True
    return list(lex)


def simple_commands(line: str) -> tuple[list[tuple[dict, list[str]]], bool]:
    """([(env, argv)] of the line's commands joined by &&, plain): plain is False when the line needs the
    shell for more than that (background jobs, pipes, redirections)."""
    toks, out, cur = tokens(line), [], []
    plain = not any(t in {"&", "|", ";", ">", "<", ">>", "||", "(", ")"} for t in toks)
    for t in toks + ["&&"]:
        if t in {"&&", "&", "|", ";", "||"}:
            if cur:
                env = {}
                while cur and re.fullmatch(r"[A-Za-z_]\w*=.*", cur[0]):
                    k, v = cur.pop(0).split("=", 1)
                    env[k] = v
                out.append((env, cur))
            cur = []
        elif t not in {">", "<", ">>", "(", ")"}:
            cur.append(t)
    return out, plain


def is_module_cli(argv) -> bool:
    return len(argv) >= 3 and argv[0] == "python" and argv[1] == "-m"


def is_script(argv) -> Path | None:
    """The repository script a command runs (`scripts/x.sh`, `bash .ci/run`), or None."""
    path = argv[1] if argv[0] == "bash" and len(argv) > 1 else argv[0]
    p = REPO / path
    return p if ("/" in path and p.is_file()) else None


def check_exists(argv) -> list[str]:
    """What the command names that does not exist: its program, module, script, repository paths."""
    problems = []
    if is_module_cli(argv):
        if importlib.util.find_spec(argv[2]) is None:
            problems.append(f"no module {argv[2]}")
    elif argv[0] in BUILTINS:
        pass
    elif argv[0] == "bash" or "/" in argv[0]:
        script = is_script(argv)
        if script is None:
            problems.append(f"no script {argv}")
        else:
            r = subprocess.run(["bash", "-n", str(script)], check=False, capture_output=True, text=True)
            if r.returncode:
                problems.append(f"bash -n {script}: {r.stderr}")
    elif shutil.which(argv[0], path=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")) \
            is None:
        problems.append(f"no program {argv[0]}")
    for arg in argv[1:]:
        if arg.startswith(REPO_DIRS) and not any(c in arg for c in "<*{[") and not (REPO / arg).exists():
            problems.append(f"no path {arg}")
    return problems


def run_module(module: str, args: list[str], env: dict, monkeypatch) -> tuple[int, str]:
    """`python -m module args` in this process: (exit status, output)."""
    out = io.StringIO()
    with monkeypatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        mp.setattr(sys, "argv", [module, *args])
        code = 0
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                runpy.run_module(module, run_name="__main__", alter_sys=True)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return code, out.getvalue()


def run_shell(line_or_argv, env: dict) -> tuple[int, str]:
    cmd = line_or_argv if isinstance(line_or_argv, str) else shlex.join(line_or_argv)
    path = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")
    r = subprocess.run(["bash", "-c", cmd], check=False, cwd=REPO, env={**os.environ, "PATH": path, **env},
                       capture_output=True, text=True, timeout=120)
    return r.returncode, r.stdout + r.stderr


def cheap_form(mode: str, env: dict, argv: list[str]) -> tuple[dict, list[str]]:
    """The command that a mark asks for instead of `argv`."""
    if mode in ("run", "needs-mnist"):
        return env, argv
    if mode == "dry-run":
        if is_module_cli(argv):
            return env, argv + ["--dry-run"]
        if is_script(argv) is not None:  # the script's own dry run; PY: this interpreter, not a new .venv
            return {**env, "DRY_RUN": "1", "PY": sys.executable}, argv
        raise AssertionError(f"no dry run for {argv}: mark the block syntax or help")
    assert mode == "help", mode
    return env, argv + ["--help"]


@pytest.mark.parametrize("block", SH_BLOCKS, ids=[b.id for b in SH_BLOCKS])
def test_shell_block(block, monkeypatch):
    assert block.mode in MODES and block.mode != "needs-mnist", block.mode
    syntax = subprocess.run(["bash", "-n"], check=False, input=block.code, capture_output=True, text=True)
    assert syntax.returncode == 0, syntax.stderr
    lines = logical_lines(block.code)
    assert lines, "an empty block"
    for line in lines:
        commands, plain = simple_commands(line)
        problems = [p for _, argv in commands for p in check_exists(argv)]
        assert not problems, f"{line}: {problems}"
        if block.mode == "syntax":
            continue
        if not plain:
            assert block.mode == "run", f"{line}: mark it syntax (no cheap form of a compound command)"
            code, out = run_shell(line, {})
            assert code == 0, f"{line}\n{out}"
            continue
        for env, argv in commands:
            env, argv = cheap_form(block.mode, env, argv)
            if is_module_cli(argv) and argv[2].startswith("dreamflow_utils"):
                code, out = run_module(argv[2], argv[3:], env, monkeypatch)
            else:
                code, out = run_shell(argv, env)
            assert code == 0, f"{shlex.join(argv)} (from: {line})\n{out}"


# ----------------------------------------------------------------------------- the document
def test_every_block_has_a_known_language_and_mark():
    for b in BLOCKS:
        assert b.lang in SHELL + PYTHON + ("text",), f"line {b.line}: language {b.lang!r}"
        assert b.mode in MODES, f"line {b.line}: mark {b.mode!r}"
    assert sum(TEXT.count(f"readme-test: {m}") for m in MODES) == sum(b.mode != "run" for b in BLOCKS), \
        "a readme-test mark that is not right before a code block"


def test_the_findings_block_is_rendered_from_results():
    from dreamflow_utils.studies.findings import readme_findings, render
    assert readme_findings(TEXT) == render(), \
        "README's findings are stale: python -m dreamflow_utils.studies.findings --write README.md"


def test_the_two_commands_and_ci_runs_the_readme_test_command():
    codes = [b.code.strip() for b in BLOCKS]
    assert "scripts/reproduce.sh" in codes and "bash .ci/run" in codes
    ci = [ln for ln in (REPO / ".ci/run").read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    assert ci[-1].strip() in codes, "the README's test command is not what .ci/run runs"


def _slug(heading: str) -> str:
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_links_paths_modules_and_anchors_exist():
    prose = re.sub(r"^```.*?^```", "", TEXT, flags=re.MULTILINE | re.DOTALL)
    anchors = {_slug(h) for h in re.findall(r"^#+ (.*)$", prose, re.MULTILINE)}
    missing = []
    for target in re.findall(r"\]\(([^)\s]+)\)", prose):
        if target.startswith(("http://", "https://")):
            continue
        if target.startswith("#"):
            if target[1:] not in anchors:
                missing.append(target)
        elif not (REPO / target.split("#")[0]).exists():
            missing.append(target)
    for span in re.findall(r"`([^`\s]+)`", prose):
        path = span.split("::")[0]
        if path.startswith(REPO_DIRS) and not any(c in path for c in "<*{[") and not path.startswith("figures/quick") \
                and not (REPO / path).exists():
            missing.append(path)
    for module in set(re.findall(r"python -m ([\w.]+)", TEXT)):
        if importlib.util.find_spec(module) is None:
            missing.append(f"module {module}")
    assert not missing, missing


def test_it_speaks_of_the_project_only():
    """No issue numbers, sessions or paths outside the repository."""
    found = re.findall(r"(?i)\bissues?\s*#?\d+|\bsessions?\b|\.\./\S*", TEXT)
    assert not found, found


# ----------------------------------------------------------------------------- the renderer's rules
def test_findings_pick_the_best_by_rule_and_tolerate_what_they_do_not_know(tmp_path):
    from dreamflow_utils.studies.findings import END, START, render, replace_findings

    rows = ["dataset,variant,readout,seed,test_accuracy,seconds,family"]
    rows += [f"mnist,old,local,{s},0.90,1,shared" for s in range(5)]
    rows += [f"mnist,brand new,local,{s},{0.93 + s / 1000},1,shared" for s in range(5)]
    rows += ["mnist,lucky,local,0,0.99,1,shared"]  # higher, but one seed
    rows += [f"mnist,brand new,probe-svm,{s},0.95,1,shared" for s in range(5)]  # a read-out not known
    rows += [f"mnist,odd one,unheard-of,{s},0.5,1,shared" for s in range(5)]
    rows += ["mnist,kNN on pixels,baseline,0,0.97,1,baseline"]
    rows += [f"cifar,brand new,local,{s},0.41,1,shared" for s in range(6)]  # a data set not known
    (tmp_path / "frontier.csv").write_text("\n".join(rows) + "\n")
    text = render(tmp_path)
    assert "best local model (own read-out): `brand new` 93.20 ± 0.16% (n=5), goal 97.5%: missed by 4.30" in text
    assert "(higher with fewer than 5 seeds: `lucky` (local) 99.00% (n=1))" in text
    assert "best probe: `brand new` (probe-svm) 95.00 ± 0.00% (n=5), goal 98.5%" in text
    assert "best unheard-of: `odd one` 50.00 ± 0.00% (n=5)" in text
    assert "baselines: kNN on pixels 97.00% (n=1)" in text
    assert "**Frontier, cifar**" in text and "`brand new` 41.00 ± 0.00% (n=6)" in text
    assert "no records under `results/reproduction/`" in text and "no records under `results/symmetry/`" in text
    doc = f"# x\n{START}\nold\n{END}\nrest\n"
    assert replace_findings(doc, text) == f"# x\n{START}\n{text}{END}\nrest\n"
    with pytest.raises(ValueError, match="findings:start"):
        replace_findings("no markers", text)


# ----------------------------------------------------------------------------- python blocks (last: a child
# process runs them while the tests above run)
RUNNER = textwrap.dedent('''
    import json, sys, traceback, warnings
    blocks = json.load(open(sys.argv[1]))
    results = []
    for b in blocks:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                exec(compile(b["code"], f"README.md:{b['line']}", "exec"), {"__name__": "__readme__"})
            results.append({"status": "ok"})
        except Exception as e:
            results.append({"status": "error", "error": traceback.format_exc()})
        print(f"-- end of block at line {b['line']}", flush=True)
    json.dump(results, open(sys.argv[2], "w"))
''')


@pytest.fixture(scope="module", autouse=True)
def python_child(tmp_path_factory):
    """One child process runs every Python block to run; it starts with the module's first test, so it
    works while the tests above run here."""
    todo = [b for b in PY_BLOCKS if b.mode == "run" or (b.mode == "needs-mnist" and REAL_MNIST.exists())]
    folder = tmp_path_factory.mktemp("readme")
    for name in ("notebooks", "results"):
        (folder / name).symlink_to(REPO / name, target_is_directory=True)
    (folder / "blocks.json").write_text(json.dumps([{"line": b.line, "code": b.code} for b in todo]))
    env = dict(os.environ, MPLBACKEND="Agg")
    if REAL_MNIST.exists():
        env.setdefault("DREAMFLOW_MNIST", str(REAL_MNIST))
    proc = subprocess.Popen([sys.executable, "-c", RUNNER, "blocks.json", "results.json"], cwd=folder, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    yield proc, todo, folder
    if proc.poll() is None:
        proc.kill()
        proc.communicate()


@pytest.fixture(scope="module")
def python_results(python_child):
    """{line: result} of the Python blocks the child ran, with each block's output."""
    proc, todo, folder = python_child
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    results = json.loads((folder / "results.json").read_text())
    outputs = re.split(r"-- end of block at line \d+\n", out)
    return {b.line: res | {"output": text} for b, res, text in zip(todo, results, outputs)}


@pytest.mark.parametrize("block", PY_BLOCKS, ids=[b.id for b in PY_BLOCKS])
def test_python_block(block, python_results):
    assert block.mode in ("run", "syntax", "needs-mnist"), block.mode
    compile(block.code, f"README.md:{block.line}", "exec")
    if block.mode == "syntax":
        modules = re.findall(r"^(?:from|import) (dreamflow_utils[\w.]*)", block.code, re.MULTILINE)
        assert all(importlib.util.find_spec(m) for m in modules), modules
        return
    if block.mode == "needs-mnist" and not REAL_MNIST.exists():
        pytest.skip(f"real MNIST not found at {REAL_MNIST}")
    result = python_results[block.line]
    assert result["status"] == "ok", result["output"] + result.get("error", "")
