"""TBPTTModule in lightning.Trainer follows the plain engine loop update for update.

The task: next-byte prediction on the source of Python's ``textwrap`` module, TBPTT(25, 50) in
stored mode (so each update runs several backward passes), chunks of 20 steps (so the updates
fall inside batches and the epoch-end flush trains a short last chunk), 10 updates over 2.5
epochs.
"""

from __future__ import annotations

import inspect
import textwrap
import warnings

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

import tbptt
from tbptt import TBPTT, Engine
from tbptt.data import ChunkDataset, TokenBatcher

L = pytest.importorskip("lightning")
from tbptt.integrations.lightning import TBPTTDDPStrategy, TBPTTModule  # noqa: E402

STEPS, B, CHUNK = 10, 4, 20


class CharLM(TBPTTModule):
    def __init__(self, **kwargs) -> None:
        super().__init__(TBPTT(25, 50), gradient_clip_val=0.5, **kwargs)
        self.embed = nn.Embedding(256, 12)
        self.lstm = nn.LSTM(12, 16, batch_first=True)
        self.head = nn.Linear(16, 256)
        self.seen: list[float] = []

    def forward(self, x, state):  # x (B, T) -> (B, T, 256)
        y, state = self.lstm(self.embed(x), state)
        return self.head(y), state

    def loss(self, y, targets):
        return tbptt.losses.cross_entropy(y, targets)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-2)

    def on_tbptt_update(self, update):
        super().on_tbptt_update(update)
        self.seen.append(update.loss.item())


def text_tokens() -> torch.Tensor:
    text = inspect.getsource(textwrap).encode()[: B * 90 + 1]  # 90 steps per row
    return torch.tensor(list(text))


def batcher() -> TokenBatcher:
    return TokenBatcher(text_tokens(), batch_size=B, chunk_len=CHUNK, tail="drop")


def make_model(**kwargs) -> CharLM:
    torch.manual_seed(0)
    return CharLM(**kwargs)


def trainer(**kwargs):
    args = {
        "accelerator": "cpu",
        "devices": 1,
        "max_steps": STEPS,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
    }
    return L.Trainer(**{**args, **kwargs})


def plain_loop() -> tuple[list[float], nn.Module]:
    """The reference: the engine in a hand-written loop, the same clipping and optimizer."""
    model = make_model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    engine = Engine(model, model.loss, TBPTT(25, 50))
    data, losses = batcher(), []

    def step(update):
        nn.utils.clip_grad_norm_(model.parameters(), 0.5)
        opt.step()
        losses.append(update.loss.item())

    while True:
        for chunk in data:
            for update in engine.feed(*chunk):
                step(update)
                if len(losses) == STEPS:
                    return losses, model
        for update in engine.flush():
            step(update)


@pytest.fixture(autouse=True)
def _float32_and_quiet():
    dtype, threads = torch.get_default_dtype(), torch.get_num_threads()
    torch.set_default_dtype(torch.float32)  # other test modules switch to float64
    torch.set_num_threads(1)  # tiny tensors: intra-op threads only slow it down
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield
    torch.set_default_dtype(dtype)
    torch.set_num_threads(threads)


def test_lightning_trainer_matches_the_plain_engine_loop():
    want, ref = plain_loop()
    model = make_model()
    loader = DataLoader(ChunkDataset(batcher()), batch_size=None)
    trainer().fit(model, loader)
    assert len(model.seen) == STEPS
    assert model.seen == pytest.approx(want, abs=1e-6)
    for a, b in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    assert model.seen[-1] < model.seen[0]  # it learns


def test_ddp_wrapper_is_refused_with_the_fix():
    model = make_model()
    loader = DataLoader(ChunkDataset(batcher()), batch_size=None)
    ddp = L.pytorch.strategies.DDPStrategy(process_group_backend="gloo")
    with pytest.raises(ValueError, match="TBPTTDDPStrategy"):
        trainer(strategy=ddp, max_steps=1).fit(model, loader)
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def test_bad_batches_and_arguments_are_clear_errors():
    with pytest.raises(TypeError, match="truncation rule"):
        TBPTTModule(25)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="gradient_clip_algorithm"):
        TBPTTModule(TBPTT(5), gradient_clip_algorithm="max")  # type: ignore[arg-type]
    model = make_model()
    with pytest.raises(TypeError, match="batch_size=None"):
        model.training_step(torch.zeros(3, 4), 0)
    assert issubclass(TBPTTDDPStrategy, L.pytorch.strategies.DDPStrategy)


def test_lightning_trainer_matches_tbptt_train_trainer():
    """The same run through tbptt's own trainer gives the same loss curve."""
    from tbptt.train import Callback, Trainer

    class Record(Callback):
        def __init__(self) -> None:
            self.losses: list[float] = []

        def on_update(self, trainer, update, stepped):
            self.losses.append(update.loss.item())

    ours = make_model()
    record = Record()
    Trainer(
        ours,
        ours.loss,
        TBPTT(25, 50),
        optimizer=torch.optim.Adam(ours.parameters(), lr=1e-2),
        clip=0.5,
        amp="off",
        device="cpu",
        callbacks=[record],
        progress=False,
        tensorboard=False,
        handle_signals=False,
    ).fit(batcher(), updates=STEPS)

    model = make_model()
    trainer().fit(model, DataLoader(ChunkDataset(batcher()), batch_size=None))
    assert record.losses == pytest.approx(model.seen, abs=1e-6)


# -- whole sequences from a plain DataLoader: short last batch, Lightning 1.x semantics ----------
class Recorder(L.pytorch.loggers.Logger):
    """An in-memory logger: every (step, metrics) Lightning or the module sends."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[tuple[int, dict]] = []

    @property
    def name(self) -> str:
        return "recorder"

    @property
    def version(self) -> int:
        return 0

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass

    def log_metrics(self, metrics, step=None) -> None:
        self.rows.append((step, dict(metrics)))


class SeqGRU(TBPTTModule):
    def __init__(self, **kwargs) -> None:
        super().__init__(TBPTT(4), **kwargs)
        self.gru = nn.GRU(2, 5, batch_first=True)
        self.head = nn.Linear(5, 1)
        self.seen: list[float] = []

    def forward(self, x, state):  # x (B, T, 2) -> (B, T, 1)
        y, state = self.gru(x, state)
        return self.head(y), state

    def loss(self, y, targets):
        return tbptt.losses.mse(y, targets)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def on_tbptt_update(self, update):
        super().on_tbptt_update(update)
        self.seen.append(update.loss.item())


def sequences() -> torch.utils.data.TensorDataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(7, 10, 2, generator=g)  # 7 sequences of 10 steps: batches of 3, 3, 1
    return torch.utils.data.TensorDataset(x, x[..., :1].cumsum(1) / 3)  # (7, 10, 1)


def sequence_loop(stream_per_batch: bool) -> list[float]:
    """The reference: the plain engine over the same batches, streams ended by hand."""
    torch.manual_seed(0)
    model = SeqGRU()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    engine, losses = Engine(model, model.loss, TBPTT(4)), []

    def run(updates):
        for update in updates:  # step inside the loop: the next update uses the new weights
            opt.step()
            losses.append(update.loss.item())

    for x, y in DataLoader(sequences(), batch_size=3, drop_last=False):
        if engine.batch_size not in (None, x.shape[0]):
            run(engine.flush())
        run(engine.feed(x, y))
        if stream_per_batch:
            run(engine.flush())
    run(engine.flush())
    return losses


@pytest.mark.parametrize("stream_per_batch", [False, True])
def test_a_short_last_batch_starts_a_new_stream(stream_per_batch):
    want = sequence_loop(stream_per_batch)
    # 3 + 3 rows continue one stream (5 chunks of 4 over 20 steps); the 1-row batch starts a new
    # one. Per batch (Lightning 1.x): 3 updates of 4, 4, 2 steps per batch.
    assert len(want) == (9 if stream_per_batch else 8)
    torch.manual_seed(0)
    model = SeqGRU(stream_per_batch=stream_per_batch)
    recorder = Recorder()
    loader = DataLoader(sequences(), batch_size=3, drop_last=False)
    trainer(max_steps=-1, max_epochs=1, logger=recorder).fit(model, loader)
    assert model.seen == pytest.approx(want, abs=1e-6)
    logged = [(step, m["train_loss"]) for step, m in recorder.rows if "train_loss" in m]
    assert [v for _, v in logged] == pytest.approx(want, abs=1e-6)  # every update, not 1 a batch
    assert [step for step, _ in logged] == list(range(1, len(want) + 1))


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(stream_per_batch="yes"), TypeError, "stream_per_batch must be True or False"),
        (dict(gradient_clip_val=-1.0), ValueError, "gradient_clip_val must be None or a positive"),
        (dict(gradient_clip_val="1"), ValueError, "gradient_clip_val must be None or a positive"),
        (dict(gradient_clip_val=float("nan")), ValueError, "gradient_clip_val must be None"),
        (dict(log_name=""), TypeError, "log_name must be a non-empty string or None"),
    ],
)
def test_module_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        TBPTTModule(TBPTT(5), **kwargs)
    assert TBPTTModule(TBPTT(5), gradient_clip_val=np.float32(0.5)).gradient_clip_val == 0.5
