"""NullSwap generator cost: parameters, forward time per crop (batch 1 and 16), training-step breakdown and throughput.

Usage: python benchmarks/generator.py [--config configs/nullswap.yaml] [--threads N] [--device cpu|cuda] [--steps 3]
       [--breakdown] [--compare]

Random inputs (timing does not depend on content). The training step is the real recipe: generator + discriminator
updates with the configured recognizers (real weights) and perceptual loss.

``--breakdown`` times each part of one training step separately at the configured batch: data (a batch gathered
from a preloaded uint8 tensor), generator forward+backward, each recognizer's forward+backward through the ensemble's
re-warp (and its clean forward, which the embedding cache removes), the perceptual distance (Eq. 9) on the whole batch
and on ``loss.perceptual_images`` images, the EOT degradations, and the discriminator.

``--compare`` measures steps/hour of the same config with the CPU speed-ups off ("before": clean embeddings
recomputed every step, Eq. 9 on every image, every recognizer every step) and on ("after": the config as written), in
one run, so the ratio is from one machine state.
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
    ap.add_argument("--breakdown", action="store_true")
    ap.add_argument("--compare", action="store_true")
    ap.add_argument("--skip-forward", action="store_true", help="skip the forward-time lines")
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
    for b in () if args.skip_forward else (1, 16):
        x = torch.rand(b, 3, size, size, device=dev)
        with torch.no_grad():
            s = _time(lambda x=x: gen(x), args.repeat, sync)
        print(f"forward batch {b:2d}: {s * 1000:9.1f} ms/batch {s * 1000 / b:8.1f} ms/image")

    from nullswap.recipes import create_recipe

    recipe = create_recipe("nullswap", cfg).to(dev)
    if args.breakdown:
        _breakdown(recipe, cfg, args.train_batch, size, dev, args.steps, sync)
    if args.compare:
        before = dict(loss_overrides(cfg, perceptual_images=0, recognizers_per_step=0))
        rows = []
        for label, loss_cfg, cache in (("before (no speed-ups)", before, False), ("after (config)", None, True)):
            c = dict(cfg)
            if loss_cfg is not None:
                c = {**cfg, "loss": loss_cfg}
            r = recipe if loss_cfg is None else create_recipe("nullswap", c).to(dev)
            s = _time_train_step(r, args.train_batch, size, dev, args.steps, sync, cache)
            rows.append((label, s))
            print(f"{label}: {s:.2f} s/step = {3600 / s:,.0f} steps/hour at batch {args.train_batch}")
        print(f"speed-up after/before: {rows[0][1] / rows[1][1]:.2f}x (same run)")
    else:
        s = _time_train_step(recipe, args.train_batch, size, dev, args.steps, sync, True)
        print(f"training step (batch {args.train_batch}, recognizers {','.join(cfg['recognizers'])}, "
              f"perceptual {getattr(recipe.perceptual, 'name', '?')}): {s:.2f} s/step, {args.train_batch / s:.1f} "
              f"images/s, {3600 / s:,.0f} steps/hour")


def loss_overrides(cfg, **kw):
    """The config's loss section with ``kw`` replaced (DLW needs every recognizer: keep 'average' then)."""
    out = dict(cfg.get("loss") or {})
    out.update(kw)
    return out


def _time_train_step(recipe, batch, size, dev, steps, sync, cache: bool) -> float:
    groups = recipe.optimizer_groups()
    opt_g = torch.optim.Adam(groups["generator"], lr=5e-4)
    opt_d = torch.optim.Adam(groups["discriminator"], lr=1e-4) if groups.get("discriminator") else None
    pool = (torch.rand(64, 3, size, size) * 255).to(torch.uint8)  # a preloaded uint8 crop store
    state = {"i": 0}

    def step() -> None:
        i = state["i"]
        idx = torch.arange(i, i + batch) % pool.shape[0]
        state["i"] = i + batch
        x = (pool[idx].float() / 255).to(dev)
        loss, _, prot = recipe.generator_step(x, 0, indices=idx if cache else None)
        opt_g.zero_grad()
        loss.backward()
        opt_g.step()
        if opt_d is not None:
            ld, _ = recipe.discriminator_step(x, prot.detach())
            opt_d.zero_grad()
            ld.backward()
            opt_d.step()

    if cache:  # fill the clean-embedding cache first (what every epoch after the first sees)
        for _ in range(pool.shape[0] // batch):
            step()
    return _time(step, steps, sync)


def _breakdown(recipe, cfg, batch, size, dev, repeat, sync) -> None:
    """Milliseconds per part of one training step (see the module docstring)."""
    from nullswap.losses.eot import gaussian_blur, jpeg_differentiable, resize_round_trip

    pool = (torch.rand(512, 3, size, size) * 255).to(torch.uint8)
    x = torch.rand(batch, 3, size, size, device=dev)
    rows: list[tuple[str, float]] = []

    def add(name, fn):
        rows.append((name, _time(fn, repeat, sync) * 1000))

    add("data: batch from a preloaded uint8 tensor", lambda: (pool[torch.randint(0, 512, (batch,))].float() / 255))
    gen = recipe.generator

    def gen_fb():
        gen(x).sum().backward()

    add("generator forward+backward", gen_fb)
    ens = recipe.ensemble
    for i, m in enumerate(ens.recognizers):
        def fb(i=i, m=m):
            xx = x.clone().requires_grad_(True)
            m(ens.crops_for(i, xx)).sum().backward()

        def fw(i=i, m=m):
            with torch.no_grad():
                m(ens.crops_for(i, x))

        add(f"recognizer {m.name}: forward+backward (protected)", fb)
        add(f"recognizer {m.name}: forward (clean; cached after epoch 1)", fw)
    per = recipe.perceptual
    k = int((cfg.get("loss") or {}).get("perceptual_images") or batch)
    for n in sorted({batch, k}, reverse=True):
        def pf(n=n):
            xx = x[:n].clone().requires_grad_(True)
            per(x[:n], xx).sum().backward()

        add(f"perceptual {getattr(per, 'name', '?')} forward+backward, {n} images", pf)
    xx = x.clone().requires_grad_(True)
    add("EOT jpeg (differentiable) forward+backward",
        lambda: jpeg_differentiable(xx, torch.full((batch,), 75.0)).sum().backward())
    add("EOT resize forward+backward", lambda: resize_round_trip(xx, 0.7).sum().backward())
    add("EOT blur forward+backward", lambda: gaussian_blur(xx, 0.8).sum().backward())
    if recipe.discriminator is not None:
        d = recipe.discriminator
        add("discriminator forward+backward (x2: real and fake)", lambda: d(x).sum().backward())
    print(f"training-step breakdown (batch {batch}, {size}x{size}, {repeat} repeats, ms):")
    for name, ms in rows:
        print(f"  {ms:9.1f}  {name}")


if __name__ == "__main__":
    main()
