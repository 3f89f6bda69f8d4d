"""Training-only position readouts that ask the language model to know where things are.

Trained with the answer loss alone, the embedded model's grounding reply comes out as the
training set's average box whatever object is named: a cross-entropy on coordinate digits
rewards the marginal long before it rewards reading this image. Two linear readouts give the
language model a dense, continuous signal instead:

* **token readout**: from the LLM's last hidden state at every image token, that token's own
  centre as a fraction of the image width and height. Nothing else asks the image states to keep
  the column they came from (depth needs the row more than the column), and a reply can only
  read a position that the states it attends to still carry.
* **reply readout**: from the hidden state at every position of a grounding reply (the one
  before its first token included), the named object's box centre in the same fractions. That
  is where the model has to have fetched the object's position before it writes a coordinate.

Both are mean squared errors in image fractions, weighted by ``--locate-weight``. The readouts
are not part of the model: they live next to it in the training step, are saved with each
checkpoint (``locate_readouts.safetensors``) so that a resumed run continues them, and are left
out of every model folder, which stays a stock Qwen3-VL plus the DPT head.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LocateReadouts", "READOUTS_FILE", "token_centres", "token_readout_error",
           "locate_loss", "save_readouts", "load_readouts"]

#: File of a checkpoint folder that holds the readouts' weights.
READOUTS_FILE = "locate_readouts.safetensors"


class LocateReadouts(nn.Module):
    """The two linear readouts (hidden size -> x, y as fractions of the image)."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.token_xy = nn.Linear(hidden_size, 2)
        self.reply_xy = nn.Linear(hidden_size, 2)


def token_centres(grid_h: int, grid_w: int, device=None) -> torch.Tensor:
    """Centre of each LLM image token as ``(x, y)`` fractions of the image, (gh, gw, 2).

    The model's image is the whole input resized (no crop, no padding), so token ``(r, c)``
    covers columns ``c / gw .. (c + 1) / gw`` of the image's width, and likewise for rows.
    """
    ys = (torch.arange(grid_h, device=device, dtype=torch.float32) + 0.5) / grid_h
    xs = (torch.arange(grid_w, device=device, dtype=torch.float32) + 0.5) / grid_w
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy], dim=-1)


def token_readout_error(readouts: LocateReadouts, image_hidden: torch.Tensor) -> torch.Tensor:
    """Mean squared error of the token readout over ``image_hidden`` (B, gh, gw, C)."""
    gh, gw = image_hidden.shape[1:3]
    centres = token_centres(gh, gw, image_hidden.device).expand(image_hidden.shape[0], -1, -1, -1)
    return F.mse_loss(readouts.token_xy(image_hidden.float()), centres)


def locate_loss(readouts: LocateReadouts, hidden: torch.Tensor, image_hidden: torch.Tensor,
                labels: torch.Tensor, target_xy: torch.Tensor) -> torch.Tensor:
    """Token readout error plus reply readout error, each a mean over where it applies.

    Args:
        readouts: the two readouts.
        hidden: LLM last hidden state, (B, L, C).
        image_hidden: ``hidden`` at the image tokens, (B, gh, gw, C).
        labels: (B, L) answer labels, ``-100`` where no answer token is predicted;
            ``labels[:, t]`` is predicted from ``hidden[:, t - 1]``.
        target_xy: (B, 2) the named object's box centre in image fractions for grounding
            samples, NaN for every other sample.

    Returns:
        A scalar tensor. A batch without grounding samples still passes through the reply
        readout (times zero) so that every rank of a data-parallel job uses every parameter.
    """
    token_err = token_readout_error(readouts, image_hidden)
    target_xy = target_xy.to(hidden.device, torch.float32)
    grounded = torch.isfinite(target_xy).all(dim=1)
    # Positions whose next token is a trained reply token, in grounding samples only.
    predicting = torch.zeros_like(labels, dtype=torch.bool)
    predicting[:, :-1] = labels[:, 1:] != -100
    predicting &= grounded[:, None]
    if not bool(predicting.any()):
        return token_err + readouts.reply_xy(hidden[:, :1].float()).sum() * 0.0
    rows = predicting.nonzero()[:, 0]
    reply_err = F.mse_loss(readouts.reply_xy(hidden[predicting].float()), target_xy[rows])
    return token_err + reply_err


def save_readouts(readouts: LocateReadouts, folder: Path) -> None:
    """Write the readouts' weights into checkpoint ``folder``."""
    from safetensors.torch import save_file

    save_file({k: v.detach().cpu().contiguous() for k, v in readouts.state_dict().items()},
              str(Path(folder) / READOUTS_FILE))


def load_readouts(readouts: LocateReadouts, folder: Path) -> bool:
    """Load the readouts from checkpoint ``folder``; False when it has none (left as they are)."""
    from safetensors.torch import load_file

    path = Path(folder) / READOUTS_FILE
    if not path.is_file():
        return False
    readouts.load_state_dict(load_file(str(path)))
    return True
