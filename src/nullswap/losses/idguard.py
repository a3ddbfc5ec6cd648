"""ID-Guard's Identity Destruction Module and gradient prior (id-guard.txt, Sec. III-B and III-D, Eq. 4-8, 12).

For manipulator ``M_k`` with protected input ``x' = x + G(cat(x, delta_p))``:

* Eq. 4 ``L_bin = ||M(x) * m_bin - M(x') * m_bin||_2``; Eq. 5 ``L_hm`` the same with the heat map ``m_hm``;
* Eq. 6 ``L_ID = cos(ID(M(x)), ID(M(x')))`` (mean over the recognizers);
* Eq. 7 ``L_feat = ||E(x) * LI(m_bin) - E(x') * LI(m_bin)||_2`` on a decoder feature map ``E`` of ``M``;
* Eq. 8 ``L_k`` combines them. The distance terms are *maximised* and the cosine *minimised* (Eq. 1-3 maximise
  ``D``; Eq. 6 "maximising the cosine distance"), so the loss the optimiser minimises is
  ``l_k = -(L_bin + L_hm + L_feat) + L_ID`` (Choice: the printed Eq. 8 adds all four; signs reconciled).

Choices where the paper's tools are unavailable: ``m_bin`` is the landmark ellipse of
:func:`nullswap.metrics.disruption.face_region_mask` on the crop template (no face parser); ``m_hm`` replaces Grad-CAM
on VGGFace by the identity-Jacobian saliency of the training recognizers (:func:`heatmap_mask`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nullswap.errors import InputError
from nullswap.faces.templates import get_template
from nullswap.losses.retentive import l2_distance
from nullswap.metrics.disruption import face_region_mask

log = logging.getLogger(__name__)


def binary_mask(template: str, scale: float = 1.0) -> torch.Tensor:
    """``m_bin`` (Eq. 4): the facial-component region of an aligned crop, ``(1, 1, H, W)`` in {0, 1}.

    Choice: the ellipse around eyebrows, eyes, nose and mouth fitted to the template's 5 landmarks (all crops are
    aligned to the template, so one mask serves the batch), instead of CelebAMask-HQ parsing labels.
    """
    t = get_template(template)
    return face_region_mask(t.points_tensor()[None], t.size, scale=scale)


def heatmap_mask(embed: Callable[[torch.Tensor], Sequence[torch.Tensor]], x: torch.Tensor, probes: int = 4,
                 smooth: int = 7, generator: torch.Generator | None = None) -> torch.Tensor:
    """``m_hm`` (Eq. 5): per-pixel importance for identity, ``(B, 1, H, W)`` in [0, 1] (max 1 per image), detached.

    The paper uses Grad-CAM on VGGFace. Choice: the norm of the identity Jacobian per pixel,
    ``h(p) = sqrt(sum_d (d e_d / d x_p)^2)``, estimated without ``D`` backward passes by Hutchinson probes
    (``E_r[(d <e, r> / d x_p)^2] = sum_d (d e_d / d x_p)^2`` for ``r ~ N(0, I)``), summed over colour channels,
    averaged over recognizers (each normalised), box-smoothed (``smooth`` px, Grad-CAM maps are coarse) and
    normalised to max 1.

    Args:
        embed: ``x -> [embeddings (B, D_i)]`` (a recognizer ensemble).
        x: clean crops ``(B,3,H,W)``.
        probes: Hutchinson probes.
        smooth: box filter size (odd; 1 = none).
        generator: random source of the probes.

    Raises:
        InputError: no recognizer embeddings.
    """
    with torch.enable_grad():
        xi = x.detach().clone().requires_grad_(True)
        embs = list(embed(xi))
        if not embs:
            raise InputError("heatmap_mask: expected at least one recognizer, got none")
        total = torch.zeros(x.shape[0], 1, *x.shape[-2:], device=x.device, dtype=torch.float32)
        for i, e in enumerate(embs):
            acc = torch.zeros_like(total)
            for k in range(probes):
                r = torch.randn(e.shape, generator=generator).to(e)
                last = i == len(embs) - 1 and k == probes - 1
                (g,) = torch.autograd.grad((e * r).sum(), xi, retain_graph=not last)
                acc += g.float().pow(2).sum(1, keepdim=True)
            h = (acc / probes).sqrt()
            total += h / h.flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1, 1)
    if smooth > 1:
        total = F.avg_pool2d(total, smooth, stride=1, padding=smooth // 2, count_include_pad=False)
    return (total / total.flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1, 1)).detach().to(x.dtype)


class FeatureTap:
    """Captures ``E_k(x)`` (Eq. 7): the output of one module of a manipulator during its forward pass.

    Choice: the paper's ``E_k`` is "the upsampling network of each model"; by default the tap is the last
    ``Conv2d`` / ``ConvTranspose2d`` with more than 3 output channels (the decoder's last feature map), or the
    module named ``layer`` (``named_modules`` path).

    Raises:
        InputError: no such module.
    """

    def __init__(self, manipulator: nn.Module, layer: str | None = None) -> None:
        mods = dict(manipulator.named_modules())
        if layer is not None:
            if layer not in mods:
                raise InputError(f"feature layer: expected a module path of the manipulator, got {layer!r}")
            name = layer
        else:
            convs = [n for n, m in mods.items() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d) and m.out_channels > 3]
            if not convs:
                raise InputError(f"feature layer: expected a conv layer with > 3 channels in "
                                 f"{type(manipulator).__name__}, got none")
            name = convs[-1]
        self.layer = name
        self.value: torch.Tensor | None = None
        mods[name].register_forward_hook(self._hook)

    def _hook(self, module: nn.Module, inputs: object, output: torch.Tensor) -> None:
        self.value = output

    def pop(self) -> torch.Tensor:
        """The last captured feature map (and forget it).

        Raises:
            InputError: nothing captured.
        """
        if self.value is None:
            raise InputError(f"feature tap {self.layer!r}: expected a captured feature map, got none")
        v, self.value = self.value, None
        return v


def attack_terms(out_clean: torch.Tensor, out_adv: torch.Tensor, feat_clean: torch.Tensor | None,
                 feat_adv: torch.Tensor | None, m_bin: torch.Tensor, m_hm: torch.Tensor,
                 id_clean: Sequence[torch.Tensor], id_adv: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
    """The four IDM terms of Eq. 4-7 (each a scalar, batch mean).

    Returns:
        ``{"bin", "hm", "feat", "id"}``; ``feat`` is 0 without features and ``id`` 0 without recognizers.
    """
    terms = {"bin": l2_distance(out_clean, out_adv, m_bin), "hm": l2_distance(out_clean, out_adv, m_hm)}
    if feat_clean is not None and feat_adv is not None:
        lm = F.interpolate(m_bin.to(feat_adv.dtype), size=feat_adv.shape[-2:], mode="bilinear", align_corners=False)
        terms["feat"] = l2_distance(feat_clean, feat_adv, lm)  # Eq. 7 (LI = linear interpolation)
    else:
        terms["feat"] = out_adv.new_zeros(())
    if id_clean:
        cos = [F.cosine_similarity(a, b, dim=1).mean() for a, b in zip(id_clean, id_adv, strict=True)]
        terms["id"] = torch.stack(cos).mean()  # Eq. 6
    else:
        terms["id"] = out_adv.new_zeros(())
    return terms


def attack_loss(terms: dict[str, torch.Tensor], weights: dict[str, float] | None = None) -> torch.Tensor:
    """``l_k``, the attack loss to minimise (Eq. 8 with the signs of Eq. 1-3 and 6).

    ``l_k = -(w_bin L_bin + w_hm L_hm + w_feat L_feat) + w_id L_ID``; the weights default to 1 (the paper's plain sum).
    """
    w = {"bin": 1.0, "hm": 1.0, "feat": 1.0, "id": 1.0, **(weights or {})}
    return -(w["bin"] * terms["bin"] + w["hm"] * terms["hm"] + w["feat"] * terms["feat"]) + w["id"] * terms["id"]


def gradient_prior(manipulate: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, eps: float,
                   steps: int = 10, step_size: float = 0.005, generator: torch.Generator | None = None
                   ) -> torch.Tensor:
    """``delta_p`` of Eq. 12 (Sec. III-D, IV-A5): PGD against the surrogate ``M_s``, averaged over the batch.

    Per image, ``delta`` maximises ``||M_s(x + delta) - M_s(x)||_2^2`` with ``steps`` signed-gradient steps of
    ``step_size`` inside the ``eps`` L_inf ball (the paper: 10 iterations, step 0.01 on [-1, 1] = 0.005 on [0, 1]);
    the returned prior is the batch mean, clamped to the ball.

    Choice: PGD's uniform random start (at ``delta = 0`` the squared distance has a zero gradient).

    Returns:
        ``(3, H, W)`` detached prior.
    """
    if not eps > 0 or steps < 1:
        raise InputError(f"gradient_prior: expected eps > 0 and steps >= 1, got eps={eps!r}, steps={steps!r}")
    x = x.detach()
    with torch.no_grad():
        y = manipulate(x)
    delta = (torch.rand(x.shape, generator=generator).to(x) * 2 - 1) * eps
    for _ in range(steps):
        with torch.enable_grad():
            delta.requires_grad_(True)
            d = (manipulate((x + delta).clamp(0, 1)) - y).pow(2).flatten(1).sum(1).sum()
            (g,) = torch.autograd.grad(d, delta)
        delta = (delta.detach() + step_size * g.sign()).clamp(-eps, eps)
        delta = ((x + delta).clamp(0, 1) - x).detach()
    return delta.mean(0).clamp(-eps, eps).detach()


__all__ = ["FeatureTap", "attack_loss", "attack_terms", "binary_mask", "gradient_prior", "heatmap_mask"]
