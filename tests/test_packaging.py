"""Packaging: torch as a range, training/evaluation-only dependencies in extras, none imported on the protect path."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import torch
import torchvision

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
EXTRAS_ONLY = ("lightning-fabric", "tensorboardX", "matplotlib", "stlpips-pytorch", "torchsummary")


def _project() -> dict:
    return tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]


def _names(reqs: list[str]) -> set[str]:
    return {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower() for r in reqs}


def _version(v: str) -> tuple[int, int]:
    major, minor = v.split("+")[0].split(".")[:2]
    return int(major), int(minor)


def test_torch_is_a_range_the_installed_build_satisfies():
    deps = {r.split(">=")[0].split("==")[0]: r for r in _project()["dependencies"]}
    for name, installed in (("torch", torch.__version__), ("torchvision", torchvision.__version__)):
        spec = deps[name]
        assert "==" not in spec, spec
        low = re.search(r">=(\d+)\.(\d+)", spec)
        high = re.search(r"<(\d+)\.(\d+)", spec)
        assert low and high, spec
        assert (int(low[1]), int(low[2])) <= _version(installed) < (int(high[1]), int(high[2])), (spec, installed)


def test_training_and_evaluation_dependencies_are_extras_and_dev_has_them():
    project = _project()
    core = _names(project["dependencies"])
    extras = project["optional-dependencies"]
    for dep in EXTRAS_ONLY:
        assert dep.lower() not in core, dep
        assert dep.lower() in _names(extras["train"]) | _names(extras["eval"]), dep
    assert "lightning-fabric" in _names(extras["train"]) and "matplotlib" in _names(extras["eval"])
    assert any(r.replace(" ", "") in ("nullswap[train,eval]", "nullswap[eval,train]") for r in extras["dev"])


_BLOCKED_IMPORT = r'''
import importlib.machinery, importlib.metadata as md, sys
MODULES = {"lightning_fabric", "lightning", "tensorboardX", "matplotlib", "stlpips_pytorch", "torchsummary"}
DISTS = {"lightning-fabric", "lightning", "tensorboardx", "matplotlib", "stlpips-pytorch", "torchsummary"}
_find = importlib.machinery.PathFinder.find_spec.__func__
_dist = md.Distribution.from_name.__func__
def find_spec(cls, name, path=None, target=None):
    return None if name.split(".")[0] in MODULES else _find(cls, name, path, target)
def from_name(cls, name):
    if name.lower().replace("_", "-") in DISTS:
        raise md.PackageNotFoundError(name)
    return _dist(cls, name)
importlib.machinery.PathFinder.find_spec = classmethod(find_spec)
md.Distribution.from_name = classmethod(from_name)
try:
    import matplotlib  # noqa: F401
    raise SystemExit("the block does not work")
except ImportError:
    pass
import nullswap, nullswap.protection, nullswap.batch, nullswap.verdict, nullswap.cli.main, nullswap.cli.protect
import nullswap.metrics, nullswap.evaluation, nullswap.train, nullswap.recipes, nullswap.metrics.perceptual
import nullswap.protectors.zoo, nullswap.recognizers.zoo, nullswap.manipulators.zoo
from nullswap.protectors import create_protector
create_protector("nullswap")
from typer.testing import CliRunner
from nullswap.cli.main import app
r = CliRunner().invoke(app, ["train", "--config", "configs/nullswap-cpu-small.yaml"])
assert r.exit_code == 2 and "nullswap[train]" in r.output, r.output
print("ok")
'''


def test_protect_path_imports_without_the_extras():
    r = subprocess.run([sys.executable, "-c", _BLOCKED_IMPORT], capture_output=True, text=True, timeout=300,
                       cwd=PYPROJECT.parent)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-3000:]
