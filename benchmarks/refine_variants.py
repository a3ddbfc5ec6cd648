"""Refinement-step variants on held-out identities: which change makes the refine steps transfer to unseen recognizers.

Usage: python benchmarks/refine_variants.py [--probes 64] [--split val] [--threads 1] [--checkpoint DIR]
    [--variants r10f36.5,r10f36.5+alt,...]

Each variant is ``rK[fFLOOR][+flag...]``: the NullSwap one pass (the packaged model unless ``--checkpoint``), then K
L2 refine steps under a FLOOR dB PSNR floor (the checkpoint's training floor when omitted), on the checkpoint's
training recognizers, with:

* ``alt``: every second step attacks a Gaussian-blurred copy: run with the protector's own ``refine_blur`` steps
  (as are variants without flags), the others with this script's copy of those steps plus the flag;
* ``bl``: both terms summed in every step (LowKey, Cherepanova et al. 2021, Eq. 1): twice the cost;
* ``sS``: the blur's sigma (default 1; kernel ``2 ceil(2 sigma) + 1``);
* ``ti``: translation-invariant gradient (Dong et al. 2019): the gradient convolved with a 5x5 Gaussian, sigma 1.5;
* ``fa``: faceapi-resnet29 added to the attacked ensemble;
* ``gn``: each recognizer's gradient normalised per image before the sum;
* ``cC``: the protector's ``refine_chroma=C`` (the steps' colour part times C; ``c0`` = luminance only; also applied
  by this script's own steps since session 17);
* ``mask``: the protector's ``refine_masking`` (the steps' grey part larger where the crop's texture masks it); both
  combinable with ``alt``;
* ``with=A/B`` and ``without=A/B``: recognizers added to or removed from the attacked ensemble (names joined by
  ``/``), with the protector's own steps: e.g. a leave-one-out ensemble whose held-out recognizer is then unseen;
* ``rs``: a random start (Gaussian, a quarter of the floor's L2 radius) added to the one pass's output before the
  steps: with ``x0`` the refinement alone, from the clean crop (where the cosine's gradient is zero);
* ``diP``: input diversity (Xie et al. 2019): with probability P (default 0.5) per crop and step, the attacked
  input rescaled by U(0.9, 1.1) and shifted by U(-4, 4) px (:func:`input_diversity`);
* ``dfaP``: DFANet (Zhong & Deng, "Towards transferable adversarial attack against deep face recognition", IEEE
  TIFS 2021): dropout with rate P (default 0.1) on every convolution's output of the attacked recognizers, a new mask
  per forward (the clean embeddings without it), so each step attacks a slightly different network; depthwise
  convolutions are left out unless ``dfadw`` is also given;
* ``midF`` (with ``mwW``, default 1): feature disruption at an intermediate layer (Ganeshan et al. 2019, FDA;
  the intermediate-level attacks of Huang et al. 2019 / Wang et al. 2021 report better transfer from mid layers):
  each step also pushes the output of each recognizer's convolution at depth fraction F (forward order) away from
  the clean crop's, ``- W ||f(y) - f(x)||^2 / ||f(x)||^2`` added to each recognizer's cosine;
* ``hingeM``: threshold-aware steps: each recognizer's cosine enters as ``max(0, cos - (threshold - M))`` (its LFW
  best-accuracy threshold), so a recognizer already ``M`` below its threshold stops pulling and the step goes to
  those still above (the issue's threshold-aware identity term, here in the refinement);
* ``xS``: the protector's ``strength=S`` (the factor on the generator's residual; default 1 = ``mid``): with ``r0``
  and a floor below the model's PSNR, the one pass's own protection-vs-PSNR trade-off.

Every variant sees the same crops (``--probes`` spread over the ``--split`` identities of the training split, seed 0)
and the same generator noise (batch ``i`` seeded ``i``). Printed per variant: PSNR, seconds per crop, the share of
crops whose cosine to their own clean crop is below each recognizer's LFW best-accuracy threshold (training
recognizers first, then the unseen human-models ones), the mean cosines, and visibility proxies of the whole change:
its BT.601 chroma RMS, its luminance RMS on flat pixels (contrast-masking weight > 0.8, i.e. local luminance std
below ~0.018: cheeks, forehead) and beside edges (3x3 weight > 0.8 but 7x7 weight < 0.3: a line drawn 2-3 px beside
the nose's or a fold's own edge), all in 1/255, and how much of its luminance is drawn as strokes: the line coherence
of :mod:`nullswap.losses.line_energy` (0: isotropic grain, 1: parallel strokes; grey noise ~0.24) and the line RMS,
``sqrt(mean(l1 - l2))`` in 1/255 per pixel, and the share of the change's energy every probe shares
(:func:`nullswap.losses.shared_change.shared_change_share`: a drawing in the template's coordinates).
MODEL_CARD.md has the session-7 table.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import kornia
import torch
import torch.nn.functional as F

from nullswap.evaluation.harness import load_eval_set
from nullswap.losses.line_energy import coherence, line_energy_loss
from nullswap.losses.masking import luminance, masking_weights
from nullswap.losses.reconstruction import chroma_loss
from nullswap.losses.shared_change import shared_change_share
from nullswap.protectors import create_protector
from nullswap.protectors.nullswap.protector import blurred_copy, l2_ball_step, psnr_radius, shape_gradient
from nullswap.recognizers import list_recognizers
from nullswap.recognizers.ensemble import RecognizerEnsemble
from nullswap.recognizers.thresholds import verification_thresholds

SHARED = Path(__file__).resolve().parents[2] / "shared"
MEASURED = ["arcface-mbf", "mobilefacenet-casia", "dlib-resnet29", "faceplugin-512", "human-mobilefacenet",
            "human-mobileface", "human-faceres"]


def probe_arguments(ap: argparse.ArgumentParser) -> None:
    """The ``--probes``, ``--split``, ``--data`` and ``--threads`` options of the scripts on held-out probes."""
    ap.add_argument("--probes", type=int, default=64)
    ap.add_argument("--split", default="val")
    ap.add_argument("--data", default=str(SHARED / "data" / "celeba"))
    ap.add_argument("--threads", type=int, default=1)


def held_out_crops(data: str, split: str, probes: int) -> torch.Tensor:
    """``(N,3,128,128)`` float crops in [0,1] of ``probes`` probes spread over the ``split`` identities (seed 0)."""
    es = load_eval_set(data, split=split, template="protector-128", max_probes=probes)
    x = torch.stack([es.faces[i][0] if isinstance(es.faces[i], tuple) else es.faces[i] for i in es.probes]).float()
    return x / 255 if x.max() > 1.5 else x


def measured_ensemble() -> tuple[RecognizerEnsemble, dict[str, float]]:
    """The :data:`MEASURED` recognizers (eval mode) and their LFW best-accuracy thresholds."""
    return RecognizerEnsemble(MEASURED, source_template="protector-128").eval(), verification_thresholds("best")


def probe_setup(args: argparse.Namespace) -> tuple[torch.Tensor, RecognizerEnsemble, dict[str, float], list]:
    """Seed 0 and ``--threads``, then the held-out crops, the measured ensemble, its thresholds and clean embeddings."""
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    x = held_out_crops(args.data, args.split, args.probes)
    ev, thr = measured_ensemble()
    with torch.no_grad():
        clean = ev(x)
    return x, ev, thr, clean


def _sigma(flags: set[str]) -> float:
    """The ``sS`` flag's sigma (default 1)."""
    return next((float(f[1:]) for f in flags if f.startswith("s") and f[1:].replace(".", "").isdigit()), 1.0)


def random_start(y: torch.Tensor, radius: float) -> torch.Tensor:
    """``y`` plus Gaussian noise of L2 norm ``radius / 4`` per crop (seed 0), clamped to [0, 1]."""
    noise = torch.randn(y.shape, generator=torch.Generator().manual_seed(0)).to(y)
    return (y + noise * (0.25 * radius / noise.flatten(1).norm(dim=1).view(-1, 1, 1, 1))).clamp(0, 1)


def input_diversity(y: torch.Tensor, p: float, generator: torch.Generator) -> torch.Tensor:
    """Each crop, with probability ``p``, rescaled by U(0.9, 1.1) and shifted by U(-4, 4) px (bilinear, border pad).

    Input diversity (Xie et al., "Improving transferability of adversarial examples with input diversity", CVPR 2019)
    as a small random similarity transform, so the recognizers' own alignment warp still sees a face in place.
    """
    b = y.shape[0]
    on = (torch.rand(b, generator=generator) < p).float()
    scale = 1.0 + on * (torch.rand(b, generator=generator) * 0.2 - 0.1)
    shift = on.view(-1, 1) * (torch.rand(b, 2, generator=generator) * 8.0 - 4.0) * (2.0 / y.shape[-1])
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0 / scale
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta.to(y), list(y.shape), align_corners=False)
    return F.grid_sample(y, grid, mode="bilinear", padding_mode="border", align_corners=False)


def with_variant(prot, flags: set[str]):
    """Replace ``prot``'s refine steps by the variant's (the L2 steps of NullSwapProtector._refine_steps + flags)."""
    if "fa" in flags:
        prot._refine_spec = [*prot._refine_spec, "faceapi-resnet29"]
    sigma = _sigma(flags)
    di = next((float(f[2:] or 0.5) for f in flags if f.startswith("di")), None)
    jitter = torch.Generator().manual_seed(0)
    hinge = next((float(f[5:]) for f in flags if f.startswith("hinge")), None)
    thr = None
    if hinge is not None:
        levels = verification_thresholds("best")
        thr = torch.tensor([levels[n] for n in prot._refine_spec]).view(-1, 1)

    dfa = next((float(f[3:] or 0.1) for f in flags if f.startswith("dfa") and f != "dfadw"), None)
    dropping = [False]  # on only in the attacked forwards (the modules may be shared with the measuring ensemble)

    def drop_features(_m: torch.nn.Module, _inp: tuple, out: torch.Tensor) -> torch.Tensor:
        return F.dropout(out, dfa, training=True) if dropping[0] else out

    mid = next((float(f[3:]) for f in flags if f.startswith("mid")), None)
    mid_w = next((float(f[2:]) for f in flags if f.startswith("mw")), 1.0)
    feats: dict[int, torch.Tensor] = {}

    def mid_layers(ens: RecognizerEnsemble) -> None:
        """Hook the convolution at depth fraction ``mid`` (forward order) of each recognizer: output into feats[i]."""
        for i, rec in enumerate(ens.recognizers):
            order: list[torch.nn.Module] = []
            hooks = [m.register_forward_hook(lambda m, _i, _o, order=order: order.append(m)) for m in rec.modules()
                     if isinstance(m, torch.nn.Conv2d)]
            with torch.no_grad():
                ens(torch.rand(1, 3, 128, 128), indices=[i])
            for h in hooks:
                h.remove()
            layer = order[min(int(mid * len(order)), len(order) - 1)]
            layer.register_forward_hook(lambda _m, _i, out, i=i: feats.__setitem__(i, out))
            print(f"mid{mid:g}: {ens.names[i]}: convolution {order.index(layer) + 1} of {len(order)}", flush=True)

    def steps(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        ens = prot._refine_ensemble(x.device)
        if mid is not None and not getattr(ens, "_mid_hooked", False):
            mid_layers(ens)
            ens._mid_hooked = True
        clean_feats: dict[int, torch.Tensor] = {}
        if mid is not None:
            with torch.no_grad():
                ens(x)
                clean_feats = {i: f.detach() for i, f in feats.items()}
        if dfa is not None and not getattr(ens, "_dfa_hooked", False):
            convs = [m for m in ens.modules() if isinstance(m, torch.nn.Conv2d)
                     and not ("dfadw" not in flags and m.groups > 1)]
            for m in convs:
                m.register_forward_hook(drop_features)
            ens._dfa_hooked = True
            print(f"dfa{dfa:g}: dropout on the outputs of {len(convs)} convolutions of the attacked ensemble",
                  flush=True)
        radius = psnr_radius(x, prot.psnr_floor)
        cap = (prot.config.max_delta or 8.0) / 255.0
        alpha = 2.5 * radius / prot.refine
        with torch.no_grad():
            clean = [e.detach() for e in ens(x)]
            if "rs" in flags:  # with x0 y = x, where the gradient is zero
                y = random_start(y, radius)
        for step in range(prot.refine):
            with torch.enable_grad():
                y = y.detach().requires_grad_(True)
                if "alt" in flags:
                    inputs = [blurred_copy(y, sigma)] if step % 2 else [y]
                else:
                    inputs = [y] + ([blurred_copy(y, sigma)] if "bl" in flags else [])
                if di is not None:
                    inputs = [input_diversity(i, di, jitter) for i in inputs]
                dropping[0] = dfa is not None
                try:
                    sims = [torch.stack([F.cosine_similarity(e, c, dim=1) for e, c in zip(ens(i), clean, strict=True)])
                            for i in inputs]
                finally:
                    dropping[0] = False
                sim = torch.stack(sims).mean(0)  # (recognizers, batch)
                if mid is not None:  # feature disruption at the hooked layer (of the last input's forward)
                    dist = torch.stack([(feats[i] - clean_feats[i]).pow(2).flatten(1).sum(1)
                                        / clean_feats[i].pow(2).flatten(1).sum(1).clamp_min(1e-12)
                                        for i in sorted(clean_feats)])
                    sim = sim - mid_w * dist
                if hinge is not None:  # threshold-aware: no push below each recognizer's threshold minus the margin
                    sim = (sim - (thr - hinge)).clamp_min(0.0)
                if "gn" in flags:
                    g = torch.zeros_like(y)
                    for r in range(sim.shape[0]):
                        (gr,) = torch.autograd.grad(sim[r].sum(), y, retain_graph=r < sim.shape[0] - 1)
                        g = g + gr / gr.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
                else:
                    (g,) = torch.autograd.grad(sim.mean(0).sum(), y)
            with torch.no_grad():
                g = shape_gradient(g, prot.refine_chroma)
                if "ti" in flags:
                    g = kornia.filters.gaussian_blur2d(g, (5, 5), (1.5, 1.5))
                y = l2_ball_step(x, y, g, alpha, radius)
                y = torch.min(torch.max(y, x - cap), x + cap).clamp(0, 1)
                y = prot._guard(x, y)
        return y.detach()

    prot._refine_steps = steps
    return prot


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    probe_arguments(ap)
    ap.add_argument("--checkpoint", default=None, help="NullSwap checkpoint folder (default: the packaged model)")
    ap.add_argument("--variants", default="r10f36.5,r10f36.5+alt")
    args = ap.parse_args()
    x, ev, thr, clean = probe_setup(args)
    flat = masking_weights(x) > 0.8
    # beside an edge: smooth under a 3x3 window, textured under the 7x7 one (a pixel 2-3 px from an edge)
    beside = (masking_weights(x, window=3) > 0.8) & (masking_weights(x) < 0.3)
    print(f"flat pixels (masking weight > 0.8): {float(flat.float().mean()) * 100:.0f} %; beside an edge (3x3 weight"
          f" > 0.8, 7x7 < 0.3): {float(beside.float().mean()) * 100:.1f} %")
    print(f"{len(x)} {args.split} probes; thresholds " + " ".join(f"{n} {thr[n]:.3f}" for n in MEASURED), flush=True)
    for v in args.variants.split(","):
        base, *flags = v.split("+")
        k, _, floor = base.partition("f")
        sigma = _sigma(set(flags))
        # plain, refine_blur or refine_chroma, refine_masking: the protector's own steps
        chroma = next((float(f[1:]) for f in flags if f.startswith("c") and f[1:].replace(".", "").isdigit()), 1.0)
        strength = next((float(f[1:]) for f in flags if f.startswith("x") and f[1:].replace(".", "").isdigit()), 1.0)
        added = [n for f in flags if f.startswith("with=") for n in f[5:].split("/")]
        removed = [n for f in flags if f.startswith("without=") for n in f[8:].split("/")]
        members = {f for f in flags if f.startswith(("with=", "without="))}
        shipped = set(flags) - members <= {"alt", "mask", f"s{sigma:g}", f"s{sigma}", f"c{chroma:g}", f"c{chroma}",
                                 f"x{strength:g}", f"x{strength}"}
        prot = create_protector("nullswap", checkpoint=args.checkpoint, psnr_floor=float(floor) if floor else "auto",
                                refine=int(k[1:]), refine_blur=sigma if shipped and "alt" in flags else 0.0,
                                refine_chroma=chroma, refine_masking="mask" in flags, strength=strength)
        if prot.refine and (added or removed):
            unknown = sorted(set(added + removed) - set(list_recognizers()))
            if unknown:
                raise SystemExit(f"{v}: expected registered recognizer names, got {unknown}")
            prot._refine_spec = [n for n in prot._refine_spec if n not in removed] + added
            print(f"{v}: refine ensemble {prot._refine_spec}", flush=True)
        if prot.refine and not shipped:
            with_variant(prot, set(flags))
        t = time.time()
        y = torch.cat([prot.protect(x[i:i + 16], generator=torch.Generator().manual_seed(i))
                       for i in range(0, len(x), 16)])
        dt = (time.time() - t) / len(x)
        psnr = float((-10 * torch.log10((y - x).pow(2).mean((1, 2, 3)))).mean())
        with torch.no_grad():
            cos = [F.cosine_similarity(e, c, dim=1) for e, c in zip(ev(y), clean, strict=True)]
        below = [float((c < thr[n]).float().mean()) * 100 for n, c in zip(MEASURED, cos, strict=True)]
        chroma = float(chroma_loss(x, y).sqrt()) * 255
        dy = luminance(y - x)
        flat_rms = float(dy.pow(2)[flat].mean().sqrt()) * 255
        beside_rms = float(dy.pow(2)[beside].mean().sqrt()) * 255 if bool(beside.any()) else float("nan")
        coh, line_rms = coherence(x, y), float(line_energy_loss(x, y).sqrt()) * 255
        shared = shared_change_share(x, y) * 100
        print(f"{v:22s} {psnr:.2f} dB {dt:.2f}s/crop below% " + " ".join(f"{b:3.0f}" for b in below)
              + " | cos " + " ".join(f"{float(c.mean()):.3f}" for c in cos)
              + f" | chroma RMS {chroma:.2f} flat-luma RMS {flat_rms:.2f} edge-side RMS {beside_rms:.2f}"
              + f" | coherence {coh:.3f} line RMS {line_rms:.2f} | shared {shared:.1f} %",
              flush=True)


if __name__ == "__main__":
    main()
