"""Prepare what a training run needs on a rented GPU machine that has no network and no ``../shared``.

Writes two folders in the repo root (add both to ``.git/info/exclude``): each must travel in its own call, since the
transfer limit is 64 MiB per call with the repo included.

- ``.gpuA/weights/``: the training recognizers' weight files, laid out as the weights registry's local sources
  (``insightface/w600k_mbf.onnx``, ``dlib/...``), so ``$NULLSWAP_WEIGHTS`` finds and sha256-checks them there.
- ``.gpuB/``: the training split as a crop pack (``train-crops.npz``, :mod:`nullswap.datasets.crop_pack`), the
  Python packages the device image lacks (wheels in ``whl/``; ST-LPIPS with its AlexNet weights only, and a
  ``kornia_rs`` stand-in, in ``py/``) and ``run.sh`` (scripts/device/run.sh).

Usage (here, with the venv active): ``python scripts/device/bundle.py --config configs/nullswap-cpu-default.yaml``.
scripts/device/README.md says how the two folders travel and how the runs come back.
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


def main() -> int:
    """Write .gpuA and .gpuB for the configs given."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", action="append", required=True, help="training config(s) whose recognizers to ship")
    ap.add_argument("--root", default=".", help="repo root (where .gpuA and .gpuB are written)")
    ap.add_argument("--quality", type=int, default=92, help="JPEG quality of the crop pack")
    a = ap.parse_args()
    root = Path(a.root)
    configs = [load_config(c) for c in a.config]
    a_dir, b_dir = root / ".gpuA", root / ".gpuB"
    for d in (a_dir, b_dir):
        shutil.rmtree(d, ignore_errors=True)
    files = copy_weights(configs, a_dir / "weights")
    print(f".gpuA: {len(files)} weight files, {sum(f.stat().st_size for f in files) / 1e6:.1f} MB")
    train = build_datasets(configs[0])["train"]
    save_crop_pack(train, b_dir / "train-crops.npz", quality=a.quality, detector=configs[0]["data"]["detector"])
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "-d", str(b_dir / "whl"), *WHEELS], check=True)
    spec = importlib.util.find_spec("stlpips_pytorch")
    if spec is None or spec.origin is None:
        raise SystemExit("stlpips-pytorch is not installed here (pip install 'nullswap[train]')")
    src = Path(spec.origin).parent
    dst = b_dir / "py" / "stlpips_pytorch"
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "weights"))
    (dst / "weights" / "vST0.0").mkdir(parents=True)
    shutil.copyfile(src / "weights" / "vST0.0" / "alex_shift_tolerant.pth", dst / "weights" / "vST0.0" /
                    "alex_shift_tolerant.pth")
    (b_dir / "py" / "kornia_rs").mkdir(parents=True)
    (b_dir / "py" / "kornia_rs" / "__init__.py").write_text(KORNIA_RS_STUB)
    shutil.copyfile(Path(__file__).with_name("run.sh"), b_dir / "run.sh")
    size = sum(f.stat().st_size for f in b_dir.rglob("*") if f.is_file())
    print(f".gpuB: {size / 1e6:.1f} MB (crop pack of {len(train)} crops, q{a.quality})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
