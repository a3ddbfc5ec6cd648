"""How much a NullSwap generator's full-resolution detail branch adds to its residual (issue 12, session 16).

Usage: python benchmarks/detail_branch_share.py CKPT_DIR [CKPT_DIR ...] [--n 16] [--config CONFIG]

CKPT_DIR is a training checkpoint (``OUT/ckpt/last``: ``config.yaml`` + ``state.safetensors``) of a generator with
``model.detail_channels > 0``. On ``--n`` validation crops of the config's split (evenly spaced, eval mode, the Eq. 1
noise seeded 0) it prints the RMS of the trunk's residual (``to_residual``) and of the branch's (``detail_out``), in
the logit units the output mapping adds them in, their ratio and the cosine between them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file

from nullswap.protectors.nullswap.config import NullSwapConfig
from nullswap.protectors.nullswap.networks import NullSwapGenerator
from nullswap.train import load_config
from nullswap.train.trainer import build_datasets


def main() -> None:
    """Load each checkpoint's generator and print the two residuals' sizes."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ckpts", nargs="+")
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--config", default="configs/nullswap-cpu-wide-detail.yaml", help="whose validation crops")
    a = ap.parse_args()
    torch.set_num_threads(1)
    val = build_datasets(load_config(a.config, []))["val"]
    x = val.tensor(list(range(0, len(val), max(1, len(val) // a.n)))[: a.n])
    for ck in a.ckpts:
        cfg = yaml.safe_load(Path(ck, "config.yaml").read_text())
        g = NullSwapGenerator(NullSwapConfig.from_dict(cfg["model"]))
        state = load_file(f"{ck}/state.safetensors")
        g.load_state_dict({k[len("model.generator."):]: v for k, v in state.items()
                           if k.startswith("model.generator.")}, strict=True)
        g.eval()
        if g.detail is None or g.detail_out is None:
            raise SystemExit(f"{ck}: expected a generator with a detail branch (model.detail_channels > 0)")
        with torch.no_grad():
            pert = g.perturbation(g.id_extraction(x))
            pert = pert + g.random_noise(pert, torch.Generator().manual_seed(0))
            hx = torch.cat([g.cloak(torch.cat([g.gamma * pert, g.features(x)], 1)), x], 1)
            trunk, branch = g.to_residual(g.reconstruct(hx)), g.detail_out(g.detail(hx))
        rms_t, rms_b = float(trunk.pow(2).mean().sqrt()), float(branch.pow(2).mean().sqrt())
        corr = float((trunk * branch).sum() / (trunk.norm() * branch.norm()).clamp_min(1e-20))
        step = json.loads(Path(ck, "state.json").read_text())["counters"]["step"]
        print(f"{ck} step {step}: trunk RMS {rms_t:.4f}, branch RMS {rms_b:.4f} ({100 * rms_b / rms_t:.1f} %), "
              f"cosine {corr:+.3f} ({x.shape[0]} validation crops)")


if __name__ == "__main__":
    main()
