"""environment.yml (conda) lists the same packages, with the same versions, as pyproject.toml (pip)."""
import re
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).parents[1]


def _spec(requirement: str):
    """'numpy>=1.26' -> ('numpy', '>=1.26'); names normalised as pip does."""
    m = re.fullmatch(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*?)\s*", requirement)
    assert m, requirement
    return re.sub(r"[-_.]+", "-", m.group(1)).lower(), m.group(3).replace(" ", "")


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    # the dev extra is part of the conda environment; other extras (cluster: dask-jobqueue) are optional
    pip = dict(_spec(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"])
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    conda, pip_section = [], []
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            pip_section += dep["pip"]
        else:
            conda.append(dep)
    listed = [_spec(d) for d in conda if _spec(d)[0] not in ("python", "pip")]
    listed += [_spec(d) for d in pip_section if not d.startswith("-e")]
    assert len(listed) == len(dict(listed)), f"listed twice in environment.yml: {listed}"
    assert dict(listed) == pip
    assert "-e ." in pip_section  # the package itself
    assert set(project["optional-dependencies"]) >= {"dev", "cluster"}
    assert [_spec(r)[0] for r in project["optional-dependencies"]["cluster"]] == ["dask-jobqueue"]
