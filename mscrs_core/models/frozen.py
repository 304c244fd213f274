"""Shared state handling of the models that sit on a frozen backbone."""
from __future__ import annotations

from torch import Tensor, nn


class FrozenBackboneMixin:
    """For an ``nn.Module`` with a frozen ``self.backbone``: it stays in eval mode (no dropout), and the
    saved state is everything else (the backbone is re-loaded from its source)."""

    backbone: nn.Module

    def train(self, mode: bool = True):
        super().train(mode)  # type: ignore[misc]
        self.backbone.eval()
        return self

    def trainable_state_dict(self) -> dict[str, Tensor]:
        return {k: v for k, v in self.state_dict().items() if not k.startswith("backbone.")}  # type: ignore[attr-defined]

    def load_trainable_state_dict(self, state: dict[str, Tensor]) -> None:
        """Inverse of :meth:`trainable_state_dict`; every non-backbone key must be present."""
        expected = set(self.trainable_state_dict())
        missing, unexpected = expected - set(state), set(state) - expected
        if missing or unexpected:
            raise ValueError(f"trainable state: missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}")
        self.load_state_dict(state, strict=False)  # type: ignore[attr-defined]
