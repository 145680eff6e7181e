"""A character LM trained with TBPTT(25, 50) inside ``lightning.Trainer`` (Lightning 2.x).

    pip install "tbptt[lightning]"
    python examples/lightning_char_lm.py --steps 100                 # one device
    python examples/lightning_char_lm.py --devices 2 --steps 100     # 2 processes (GPUs or CPU)

You write the model, the per-step loss and the optimizer; ``TBPTTModule`` runs the engine in
``training_step`` (manual optimisation), one optimizer step per TBPTT update. The text is the
source of Python's ``textwrap`` module. See docs/distributed.md.
"""

from __future__ import annotations

import argparse
import inspect
import math
import textwrap

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader

import tbptt
from tbptt.data import ChunkDataset, TokenBatcher
from tbptt.integrations.lightning import TBPTTDDPStrategy, TBPTTModule


class CharLM(TBPTTModule):
    def __init__(self, batch_size: int = 8) -> None:
        super().__init__(tbptt.TBPTT(k1=25, k2=50), gradient_clip_val=1.0)
        self.batch_size = batch_size
        self.embed, self.lstm = nn.Embedding(256, 32), nn.LSTM(32, 128, batch_first=True)
        self.head = nn.Linear(128, 256)
        self.history: list[float] = []

    def forward(self, x, state):  # x (B, T) -> logits (B, T, 256)
        y, state = self.lstm(self.embed(x), state)
        return self.head(y), state

    def loss(self, y, targets):  # (B, T) per-step losses
        return tbptt.losses.cross_entropy(y, targets)

    def on_tbptt_update(self, update: tbptt.Update) -> None:
        super().on_tbptt_update(update)  # logs "train_loss"
        self.history.append(update.loss.item())  # the loss over every rank's rows

    def on_train_end(self) -> None:
        if self.global_rank == 0:
            bits = sum(self.history[-10:]) / len(self.history[-10:]) / math.log(2)
            print(f"{len(self.history)} updates, train loss {bits:.3f} bits/char (uniform: 8.00)")

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=3e-3)

    def train_dataloader(self) -> DataLoader:
        tokens = torch.tensor(list(inspect.getsource(textwrap).encode()))
        data = TokenBatcher(  # one batch = one update: chunk_len = k1
            tokens,
            batch_size=self.batch_size,
            chunk_len=25,
            world_size=self.trainer.world_size,  # this rank's rows
            rank=self.global_rank,
        )
        return DataLoader(ChunkDataset(data), batch_size=None)


def main(argv: list[str] | None = None) -> list[float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60, help="updates (optimizer steps)")
    parser.add_argument("--devices", type=int, default=1)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    model = CharLM()
    # Several devices: Lightning's processes without the DDP wrapper (see TBPTTDDPStrategy).
    strategy = TBPTTDDPStrategy(start_method="spawn") if args.devices > 1 else "auto"
    trainer = L.Trainer(
        devices=args.devices,
        strategy=strategy,
        max_steps=args.steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model)
    return model.history


if __name__ == "__main__":
    main()
