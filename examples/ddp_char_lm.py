"""Data-parallel character LM with TBPTT(25, 50): each rank trains its own rows of the stream.

    torchrun --nproc_per_node 2 examples/ddp_char_lm.py --updates 100      # 2 GPUs (or 2 CPU procs)
    torchrun --nproc_per_node 2 examples/ddp_char_lm.py --ckpt /tmp/ck     # save at the end ...
    torchrun --nproc_per_node 2 examples/ddp_char_lm.py --ckpt /tmp/ck --resume   # ... continue
    python examples/ddp_char_lm.py                                          # one process

NCCL on GPUs, gloo on CPU (picked by ``init_distributed``). The text is the source of Python's
``textwrap`` module (always installed). See docs/distributed.md.
"""

from __future__ import annotations

import argparse
import inspect
import math
import textwrap

import torch
import torch.distributed as dist
from torch import nn

import tbptt
from tbptt.data import TokenBatcher
from tbptt.integrations.distributed import (
    DistributedEngine,
    init_distributed,
    load_checkpoint,
    save_checkpoint,
)


class CharLSTM(nn.Module):
    def __init__(self, vocab: int = 256, hidden: int = 128) -> None:
        super().__init__()
        self.embed, self.lstm = nn.Embedding(vocab, 32), nn.LSTM(32, hidden, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, x, state):  # x (B, T) -> logits (B, T, V)
        y, state = self.lstm(self.embed(x), state)
        return self.head(y), state


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=60, help="updates to run (this run)")
    parser.add_argument("--batch", type=int, default=8, help="rows per rank")
    parser.add_argument("--ckpt", default=None, help="checkpoint directory (saved at the end)")
    parser.add_argument("--resume", action="store_true", help="continue from --ckpt")
    args = parser.parse_args(argv)

    info = init_distributed()  # torchrun's RANK/WORLD_SIZE; a plain single process without them
    torch.manual_seed(0)
    tokens = torch.tensor(list(inspect.getsource(textwrap).encode()))
    data = TokenBatcher(  # this rank's rows: r, r + world_size, ...
        tokens, batch_size=args.batch, chunk_len=25, world_size=info.world_size, rank=info.rank
    )
    model = CharLSTM().to(info.device)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    engine = DistributedEngine(  # broadcasts rank 0's weights; averages each update's gradient
        tbptt.Engine(model, tbptt.losses.cross_entropy, tbptt.TBPTT(k1=25, k2=50))
    )
    config = {"batch": args.batch, "lr": 3e-3}  # a resume must use the same settings
    if args.resume:  # every rank checks that all rank files come from one save of this run
        load_checkpoint(
            args.ckpt, model=model, engine=engine, optimizer=opt, data=data, config=config
        )

    losses: list[float] = []

    def step(update: tbptt.Update) -> None:
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # on the averaged gradient
        opt.step()
        losses.append(update.loss.item())  # the loss over every rank's rows

    while len(losses) < args.updates:
        for chunk in data:  # the rest of this epoch, from the saved position when resuming
            for update in engine.feed(*chunk.to(info.device)):
                step(update)
            if len(losses) >= args.updates:
                break
        else:  # the epoch ended: the last short chunk is trained, the streams start anew
            for update in engine.flush():
                step(update)
    if args.ckpt:  # on every rank at the same update (refused otherwise), written durably
        save_checkpoint(
            args.ckpt, model=model, engine=engine, optimizer=opt, data=data, config=config
        )
    bits = sum(losses[-10:]) / len(losses[-10:]) / math.log(2)
    if info.rank == 0:
        print(
            f"world_size={info.world_size} ({info.backend or 'no process group'}): "
            f"{len(losses)} updates, train loss {bits:.3f} bits/char"
        )
    if dist.is_initialized():
        dist.destroy_process_group()
    return bits


if __name__ == "__main__":
    main()
