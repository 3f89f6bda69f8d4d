"""Training losses: SILog on valid GT pixels and the answer-only language-model loss.

Both follow the DepthVLM recipe. SILog uses the release's form
``sqrt(mean(d**2) - lambda * mean(d)**2)`` with ``d = log(pred) - log(gt)`` over the pixels where
the ground truth is valid (``gt > 0``), pooled over the whole batch, and the prediction is
brought to the ground truth's resolution with align-corners bilinear interpolation (as the
release does) so that the loss is measured where the labels are, not on a resampled label map.
With ``lambda = 0.5`` the loss is only half scale-invariant: it still pays for a wrong global
scale, which is what makes the depth metric.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

__all__ = ["silog_loss", "resize_to", "answer_lm_loss", "SILOG_LAMBDA"]

#: Variance weight of SILog in the DepthVLM recipe.
SILOG_LAMBDA = 0.5


def resize_to(pred: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Resize a (H, W) or (B, H, W) depth map to ``size`` = (h, w), align-corners bilinear."""
    size = (int(size[0]), int(size[1]))
    if tuple(pred.shape[-2:]) == size:
        return pred
    squeeze = pred.dim() == 2
    x = pred[None, None] if squeeze else pred[:, None]
    x = F.interpolate(x, size=size, mode="bilinear", align_corners=True)
    return x[0, 0] if squeeze else x[:, 0]


def silog_loss(preds: Sequence[torch.Tensor] | torch.Tensor,
               gts: Sequence[torch.Tensor] | torch.Tensor,
               lam: float = SILOG_LAMBDA, eps: float = 1e-6) -> torch.Tensor:
    """SILog over the valid pixels of a batch.

    Args:
        preds: predicted depth in metres, a (B, h, w) tensor or a list of (h_i, w_i) maps.
        gts: ground truth in metres, (B, H, W) or a list of (H_i, W_i) maps; ``<= 0`` or
            non-finite means invalid. Each prediction is resized to its ground truth's size.
        lam: variance weight ``lambda`` (0.5 in DepthVLM).
        eps: floor for the prediction inside the log and for the value under the square root,
            so a pixel driven to zero or a perfect batch gives a finite gradient.

    Returns:
        A scalar tensor; 0 (still attached to the graph) when no pixel is valid.
    """
    if torch.is_tensor(preds) and torch.is_tensor(gts) and preds.dim() == 3:
        preds, gts = [resize_to(preds.float(), gts.shape[-2:])], [gts]
    sums = []
    for pred, gt in zip(preds, gts):
        pred = resize_to(pred.float(), gt.shape[-2:])
        valid = torch.isfinite(gt) & (gt > 0)
        # Masked sums instead of boolean indexing: no nonzero() sync and no full-size scatter
        # in the backward pass, which dominated the step time on CPU.
        g = torch.where(valid, gt.float(), torch.ones_like(pred))
        d = (torch.log(pred.clamp_min(eps)) - torch.log(g)) * valid
        sums.append(torch.stack([d.sum(), (d * d).sum(), valid.sum().to(d.dtype)]))
    if not sums:
        return torch.zeros(())
    s, s2, n = torch.stack(sums).sum(0)
    if float(n.detach()) == 0:
        # Keep the graph connected so that every rank runs the same backward (DDP needs it).
        return s * 0.0
    mean = s / n
    value = s2 / n - lam * mean * mean
    return torch.sqrt(value.clamp_min(eps))


def answer_lm_loss(hidden: torch.Tensor, labels: torch.Tensor, lm_head: torch.nn.Module
                   ) -> tuple[torch.Tensor, int]:
    """Next-token cross-entropy on the answer tokens only.

    The logits are computed only where a label exists: the vocabulary projection of every
    image and prompt token would cost more than the rest of the text path and train nothing.

    Args:
        hidden: LLM last hidden state after the final norm, (B, L, C).
        labels: (B, L) token ids to predict at each position, ``-100`` where no loss applies
            (prompt, image and padding). ``labels[:, t]`` is predicted from ``hidden[:, t - 1]``.
        lm_head: the vocabulary projection.

    Returns:
        Mean loss over the answer tokens (0 attached to the graph when there are none) and the
        number of answer tokens.
    """
    target = labels[:, 1:]
    mask = target != -100
    n = int(mask.sum())
    if n == 0:
        return lm_head(hidden[:, :1]).sum() * 0.0, 0
    logits = lm_head(hidden[:, :-1][mask]).float()
    return F.cross_entropy(logits, target[mask]), n
