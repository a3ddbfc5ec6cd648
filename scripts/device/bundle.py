"""Prepare what a training run needs on a rented GPU machine that has no network and no ``../shared``.

The machine receives the repo (tracked files plus untracked ones git does not ignore) with every call, and at most
64 MiB per call in all, so the payload is split into folders ``.gpu1`` ... ``.gpuN`` in the repo root (add ``/.gpu*/``
to ``.git/info/exclude``), each carried by one call: every call but the last copies its folder into ``/tmp/gpu`` on
the machine (``/tmp`` survives while the machine stays warm, 30 s after each call); the last runs ``run.sh``, which
merges its own folder there too and trains. The payload:

- ``weights/``: the training recognizers' weight files, laid out as the weights registry's local sources
  (``insightface/w600k_mbf.onnx``, ``dlib/...``), so ``$NULLSWAP_WEIGHTS`` finds and sha256-checks them there;
- ``train-crops.npz``: the training split as a crop pack (:mod:`nullswap.datasets.crop_pack`);
- ``whl/`` and ``py/``: the Python packages the device image lacks (ST-LPIPS with its AlexNet weights only, and a
  ``kornia_rs`` stand-in);
- ``run.sh`` (scripts/device/run.sh), in the last folder.

Usage (here, with the venv active): ``python scripts/device/bundle.py --config configs/nullswap-cpu-default.yaml``; it
prints each call's carry and command. scripts/device/README.md says how the runs come back.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

from nullswap.datasets.crop_pack import save_crop_pack
from nullswap.hub.registry import get_weight_spec
from nullswap.hub.spec import LocalSource
from nullswap.hub.store import resolve
from nullswap.recognizers.registry import recognizer_info
from nullswap.train.config import load_config
from nullswap.train.trainer import build_datasets

# What the device image (KINDS.md: torch 2.11, onnx, onnxruntime, lightning-utilities, tensorboard, ...) lacks.
WHEELS = ("kornia==0.9.0", "onnx2torch==1.5.15", "lightning-fabric==2.6.6", "tensorboardX==2.6.5",
          "torchsummary==1.5.1")
KORNIA_RS_STUB = '''"""Stand-in for kornia_rs on the device machine: only kornia.io uses it, training never."""


class _Missing:
    def __getattr__(self, name):
        raise ImportError(f"kornia_rs stand-in: {name} is not available on the device machine")


io = _Missing()
'''


def copy_weights(configs: list[dict], dest: Path) -> list[Path]:
    """Copy every training recognizer's weight files to ``dest`` under their registry-local relative paths."""
    out = []
    names = sorted({r for cfg in configs for r in cfg.get("recognizers") or []})
    for name in names:
        for wname in recognizer_info(name).weights:
            spec = get_weight_spec(wname)
            rel = next((s.relpath for s in spec.sources if isinstance(s, LocalSource)), spec.filename)
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(resolve(spec, download=False), target)
            out.append(target)
    return out


LIMIT = 64 * 2**20  # what one call may carry, the repo included
MARGIN = 2 * 2**20


def repo_bytes(root: Path) -> int:
    """Bytes of what travels with every call: tracked files and untracked files git does not ignore."""
    out = subprocess.run(["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         check=True, capture_output=True).stdout.decode()
    return sum((root / f).stat().st_size for f in out.split("\0") if f and (root / f).is_file())


def tree_bytes(path: Path) -> int:
    """Bytes of a file or of every file below a folder."""
    return path.stat().st_size if path.is_file() else sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def split_calls(items: list[tuple[str, int]], capacity: int) -> list[list[str]]:
    """First-fit decreasing: item names grouped so that each group's bytes stay within ``capacity``.

    Raises:
        SystemExit: an item larger than ``capacity`` on its own.
    """
    groups: list[tuple[int, list[str]]] = []
    for name, size in sorted(items, key=lambda t: -t[1]):
        if size > capacity:
            raise SystemExit(f"{name}: {size / 2**20:.1f} MiB does not fit one call beside the repo "
                             f"({capacity / 2**20:.1f} MiB left of 64)")
        for k, (used, names) in enumerate(groups):
            if used + size <= capacity:
                groups[k] = (used + size, [*names, name])
                break
        else:
            groups.append((size, [name]))
    return [names for _, names in groups]


def main() -> int:
    """Write the payload into .gpu1 ... .gpuN for the configs given and print the calls."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", action="append", required=True, help="training config(s) whose recognizers to ship")
    ap.add_argument("--root", default=".", help="repo root (where the .gpuK folders are written)")
    ap.add_argument("--quality", type=int, default=92, help="JPEG quality of the crop pack")
    a = ap.parse_args()
    root = Path(a.root)
    ignored = [subprocess.run(["git", "-C", str(root), "check-ignore", "-q", f"{d}/file"]).returncode == 0
               for d in (".gpu1", ".gpu-stage")]
    if not all(ignored):
        raise SystemExit(f"{root}: expected .gpu1 ... and .gpu-stage to be ignored by git (they must not travel as "
                         "part of the repo): add '/.gpu*/' to .git/info/exclude")
    configs = [load_config(c) for c in a.config]
    for old in root.glob(".gpu*"):
        shutil.rmtree(old, ignore_errors=True)
    stage = root / ".gpu-stage"
    files = copy_weights(configs, stage / "weights")
    train = build_datasets(configs[0])["train"]
    save_crop_pack(train, stage / "train-crops.npz", quality=a.quality, detector=configs[0]["data"]["detector"])
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "-d", str(stage / "whl"), *WHEELS], check=True)
    spec = importlib.util.find_spec("stlpips_pytorch")
    if spec is None or spec.origin is None:
        raise SystemExit("stlpips-pytorch is not installed here (pip install 'nullswap[train]')")
    src = Path(spec.origin).parent
    dst = stage / "py" / "stlpips_pytorch"
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "weights"))
    (dst / "weights" / "vST0.0").mkdir(parents=True)
    shutil.copyfile(src / "weights" / "vST0.0" / "alex_shift_tolerant.pth", dst / "weights" / "vST0.0" /
                    "alex_shift_tolerant.pth")
    (stage / "py" / "kornia_rs").mkdir(parents=True)
    (stage / "py" / "kornia_rs" / "__init__.py").write_text(KORNIA_RS_STUB)
    items = [(str(f.relative_to(stage)), f.stat().st_size) for f in files]
    items += [(name, tree_bytes(stage / name)) for name in ("train-crops.npz", "whl", "py")]
    repo = repo_bytes(root)
    run_sh = Path(__file__).with_name("run.sh")
    capacity = LIMIT - MARGIN - repo - run_sh.stat().st_size
    groups = split_calls(items, capacity)
    for k, names in enumerate(groups, start=1):
        folder = root / f".gpu{k}"
        for name in names:
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(stage / name), str(folder / name))
    shutil.rmtree(stage)
    last = root / f".gpu{len(groups)}"
    shutil.copyfile(run_sh, last / "run.sh")
    print(f"crop pack: {len(train)} crops, q{a.quality}; repo {repo / 2**20:.1f} MiB travels with every call")
    for k in range(1, len(groups) + 1):
        size = tree_bytes(root / f".gpu{k}")
        cmd = (f"bash .gpu{k}/run.sh SECS NAME=CONFIG[@CKPT] ..." if k == len(groups)
               else f"mkdir -p /tmp/gpu && cp -r .gpu{k}/. /tmp/gpu/")
        print(f"call {k}: carry [\".gpu{k}\"] ({size / 2**20:.1f} MiB + repo = {(size + repo) / 2**20:.1f} MiB): {cmd}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
