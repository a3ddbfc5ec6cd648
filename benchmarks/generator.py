"""NullSwap generator cost: parameters, forward time per 256x256 crop (batch 1 and 16), training-step throughput.

Usage: python benchmarks/generator.py [--config configs/nullswap.yaml] [--threads N] [--device cpu|cuda] [--steps 3]
Random inputs (timing does not depend on content). The training step is the real recipe: generator + discriminator
updates with the configured recognizers (real weights) and perceptual loss.
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from nullswap.protectors.nullswap import NullSwapConfig, NullSwapGenerator, count_parameters
from nullswap.train.config import load_config


def _time(fn, repeat: int, sync) -> float:
    fn()
    sync()
    t = time.perf_counter()
    for _ in range(repeat):
        fn()
    sync()
    return (time.perf_counter() - t) / repeat


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", default="configs/nullswap.yaml")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--train-batch", type=int, default=8)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    cfg = load_config(args.config)
    mcfg = NullSwapConfig.from_dict(cfg["model"])
    gen = NullSwapGenerator(mcfg).to(dev).eval()
    size = mcfg.image_size
    print(f"host: {platform.machine()} {platform.processor() or ''}, torch {torch.__version__}, device {dev}, "
          f"threads {args.threads}, config {args.config}")
    print(f"generator parameters: {count_parameters(gen):,} ({size}x{size})")
    for b in (1, 16):
        x = torch.rand(b, 3, size, size, device=dev)
        with torch.no_grad():
            s = _time(lambda x=x: gen(x), args.repeat, sync)
        print(f"forward batch {b:2d}: {s * 1000:9.1f} ms/batch {s * 1000 / b:8.1f} ms/image")

    from nullswap.recipes import create_recipe

    recipe = create_recipe("nullswap", cfg).to(dev)
    groups = recipe.optimizer_groups()
    opt_g = torch.optim.Adam(groups["generator"], lr=5e-4)
    opt_d = torch.optim.Adam(groups["discriminator"], lr=1e-4) if groups.get("discriminator") else None
    x = torch.rand(args.train_batch, 3, size, size, device=dev)

    def step() -> None:
        loss, _, prot = recipe.generator_step(x, 0)
        opt_g.zero_grad()
        loss.backward()
        opt_g.step()
        if opt_d is not None:
            ld, _ = recipe.discriminator_step(x, prot.detach())
            opt_d.zero_grad()
            ld.backward()
            opt_d.step()

    s = _time(step, args.steps, sync)
    print(f"training step (batch {args.train_batch}, recognizers {','.join(cfg['recognizers'])}, "
          f"perceptual {getattr(recipe.perceptual, 'name', '?')}): {s:.2f} s/step, {args.train_batch / s:.1f} images/s")


if __name__ == "__main__":
    main()
