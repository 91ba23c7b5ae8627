"""The shared input stage every architecture reads through.

``x (batch, features)`` passes unchanged (encoder "none"); ``x (batch,
lookback, features)`` is summarised by a GRU (last hidden state) or a causal
1-D convolution stack (output at the last step). An optional learned asset
embedding is concatenated, so one pooled model can tell assets apart. All
parameters here are shared by every task.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

ENCODERS = ("none", "gru", "conv")


class CausalConv(nn.Module):
    """Dilated causal Conv1d stack (kernel 3, dilations 1, 2, 4, ...).

    Left padding only, so the output at step t sees steps <= t; enough layers
    that the last step sees the whole lookback window (3 layers, receptive
    field 15, when the lookback is unknown).
    """

    kernel = 3

    def __init__(self, in_features: int, hidden: int, lookback: int | None) -> None:
        super().__init__()
        n_layers = 3 if lookback is None else 1
        while lookback is not None and self.receptive_field(n_layers) < lookback:
            n_layers += 1
        self.convs = nn.ModuleList(
            nn.Conv1d(in_features if i == 0 else hidden, hidden, self.kernel, dilation=2**i)
            for i in range(n_layers)
        )

    @classmethod
    def receptive_field(cls, n_layers: int) -> int:
        return 1 + (cls.kernel - 1) * (2**n_layers - 1)

    def steps(self, x: torch.Tensor) -> torch.Tensor:
        """Output at every step: ``(batch, time, features) -> (batch, hidden, time)``."""
        h = x.transpose(1, 2)
        for conv in self.convs:
            h = torch.relu(conv(F.pad(h, ((self.kernel - 1) * conv.dilation[0], 0))))
        return h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.steps(x)[:, :, -1]


class InputStage(nn.Module):
    """Features (+ sequence encoder) (+ asset embedding) -> one vector per row."""

    def __init__(
        self,
        in_features: int,
        *,
        n_assets: int = 1,
        asset_embedding: int = 0,
        encoder: str = "none",
        encoder_hidden: int = 32,
        lookback: int | None = None,
    ) -> None:
        super().__init__()
        if encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {ENCODERS}, got {encoder!r}")
        self.in_features = in_features
        self.encoder_kind = encoder
        self.lookback = lookback
        self.n_assets = n_assets
        self.encoder: nn.Module | None = None
        width = in_features
        if encoder == "gru":
            self.encoder = nn.GRU(in_features, encoder_hidden, batch_first=True)
            width = encoder_hidden
        elif encoder == "conv":
            self.encoder = CausalConv(in_features, encoder_hidden, lookback)
            width = encoder_hidden
        self.embedding = nn.Embedding(n_assets, asset_embedding) if asset_embedding else None
        self.out_features = width + asset_embedding

    def _check(self, x: torch.Tensor) -> None:
        want = 2 if self.encoder is None else 3
        shape = "(batch, features)" if want == 2 else "(batch, lookback, features)"
        if x.dim() != want or x.shape[-1] != self.in_features:
            raise ValueError(
                f"model input has shape {tuple(x.shape)}; expected {shape} with "
                f"{self.in_features} features (sequence encoder {self.encoder_kind!r})"
            )
        if want == 3 and self.lookback is not None and x.shape[1] != self.lookback:
            raise ValueError(
                f"model input has {x.shape[1]} time steps; the model was built for lookback "
                f"{self.lookback}"
            )

    def forward(self, x: torch.Tensor, asset: torch.Tensor | None = None) -> torch.Tensor:
        self._check(x)
        if isinstance(self.encoder, nn.GRU):
            h = self.encoder(x)[1][-1]
        elif self.encoder is not None:
            h = self.encoder(x)
        else:
            h = x
        if self.embedding is None:
            return h  # without an embedding, asset ids are not needed (pooled model)
        if asset is None:
            raise ValueError(
                "this model has an asset embedding: pass asset ids (batch,) as `asset`"
            )
        asset = torch.as_tensor(asset, dtype=torch.long, device=h.device).reshape(-1)
        if asset.shape[0] != h.shape[0]:
            raise ValueError(f"got {asset.shape[0]} asset ids for a batch of {h.shape[0]} rows")
        if asset.numel() and (int(asset.min()) < 0 or int(asset.max()) >= self.n_assets):
            raise ValueError(
                f"asset ids must be in 0..{self.n_assets - 1} (n_assets={self.n_assets}); "
                f"got {int(asset.min())}..{int(asset.max())}"
            )
        return torch.cat([h, self.embedding(asset)], dim=-1)

    def last_layer(self) -> nn.Parameter | None:
        """Weight closest to the output (encoder before embedding), or None without parameters."""
        if isinstance(self.encoder, nn.GRU):
            return self.encoder.weight_hh_l0
        if isinstance(self.encoder, CausalConv):
            return self.encoder.convs[-1].weight
        if self.embedding is not None:
            return self.embedding.weight
        return None
