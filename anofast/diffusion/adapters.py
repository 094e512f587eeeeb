"""Adapters from diffusers models to the sampler's ``model(x_t, t, cond) -> prediction`` callable.

diffusers is an optional dependency (``pip install anofast[diffusion]``); nothing here imports it until a model is
wrapped, and the wrapped model is only called, never downloaded.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


class DiffusersModel:
    """Wraps a diffusers ``UNet2DModel`` or ``UNet2DConditionModel`` as ``model(x_t, t, cond) -> prediction``.

    Args:
        unet: the network.
        prediction: ``"eps"`` or ``"v"`` (diffusers' scheduler ``prediction_type`` ``"epsilon"`` /
            ``"v_prediction"``; the UNet itself does not record it).
        null_class: for a class-conditional ``UNet2DModel`` (``num_class_embeds``), the class index used as the
            unconditional input of classifier-free guidance.

    ``cond`` is ``encoder_hidden_states`` ``(B, L, D)`` for a ``UNet2DConditionModel`` (guidance contrasts it with
    zeros unless ``null_cond=`` is passed to the sampler) and ``class_labels`` ``(B,)`` (or None) for a
    ``UNet2DModel``. Inputs are cast to the network's dtype and device; the output comes back as float32.
    """

    def __init__(self, unet: Any, *, prediction: str = "eps", null_class: int | None = None):
        name = type(unet).__name__
        if name not in ("UNet2DModel", "UNet2DConditionModel"):
            raise TypeError(f"unet must be a diffusers UNet2DModel or UNet2DConditionModel, got {name}")
        if prediction in ("epsilon", "v_prediction"):
            prediction = {"epsilon": "eps", "v_prediction": "v"}[prediction]
        if prediction not in ("eps", "v"):
            raise ValueError(f"prediction must be 'eps' or 'v', got {prediction!r}")
        self.unet = unet
        self.prediction = prediction
        self.conditional = name == "UNet2DConditionModel"
        self.null_class = null_class

    def null_cond(self, cond: Tensor | None) -> Tensor:
        """The unconditional input for guidance: zero embeddings, or ``null_class`` labels."""
        if self.conditional:
            return torch.zeros_like(cond)
        if self.null_class is None or cond is None:
            raise ValueError("guidance with a class-conditional UNet2DModel needs null_class= (or null_cond=)")
        return torch.full_like(cond, self.null_class)

    def __call__(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        p = next(self.unet.parameters())
        xin = x.to(device=p.device, dtype=p.dtype)
        tin = t.to(p.device)
        if self.conditional:
            if cond is None:
                raise ValueError("a UNet2DConditionModel needs cond= (encoder_hidden_states, shape (B, L, D))")
            out = self.unet(xin, tin, encoder_hidden_states=cond.to(device=p.device, dtype=p.dtype)).sample
        else:
            labels = None if cond is None else cond.to(p.device)
            out = self.unet(xin, tin, class_labels=labels).sample
        return out.to(device=x.device, dtype=torch.float32)


def from_diffusers(unet: Any, *, prediction: str | None = None, scheduler: Any = None,
                   null_class: int | None = None) -> DiffusersModel:
    """A sampler model from a diffusers UNet; ``prediction`` defaults to ``scheduler.config.prediction_type``
    when a scheduler is given, else ``"eps"``."""
    if prediction is None:
        prediction = "eps" if scheduler is None else scheduler.config.prediction_type
    return DiffusersModel(unet, prediction=prediction, null_class=null_class)
