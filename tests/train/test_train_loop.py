"""The training loop in Python: exact resume, NaN skipping, lr scaling, evaluation, checkpoints."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from tbptt import ARTBP, BPTT, TBPTT, Chunk, VariableLength, losses
from tbptt.data import TokenBatcher
from tbptt.models import CharRNN, SeriesRNN
from tbptt.train import (
    Callback,
    CheckpointError,
    NonFiniteError,
    SeriesMetrics,
    TokenMetrics,
    Trainer,
    evaluate,
    fit,
)
from tbptt.train.checkpoint import find_checkpoints, load_checkpoint, save_checkpoint
from tbptt.truncation import TruncationRule


def tokens(n: int = 3000, vocab: int = 11, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    # a learnable stream: mostly +1 mod vocab, sometimes random
    x = torch.zeros(n, dtype=torch.long)
    noise = torch.randint(vocab, (n,), generator=g)
    jump = torch.rand(n, generator=g) < 0.2
    for t in range(1, n):
        x[t] = noise[t] if jump[t] else (x[t - 1] + 1) % vocab
    return x


def batcher(k: int = 8, shuffle: bool = False) -> TokenBatcher:
    return TokenBatcher(
        tokens(600), batch_size=4, chunk_len=k, doc_starts=[0, 200, 420], shuffle=shuffle, seed=3
    )


def make_trainer(
    run_dir: Path | None, rule: TruncationRule, mode: str = "stored", dropout: float = 0.1, **kw
) -> Trainer:
    torch.manual_seed(0)
    model = CharRNN(11, embed=6, hidden=12, layers=2, dropout=dropout)
    opts = dict(
        engine_options={"reduction": "sum"} if getattr(rule, "needs_sum_reduction", False) else {},
        lr=1e-2,
        schedule="cosine",
        warmup=3,
        clip=1.0,
        device="cpu",
        mode=mode,
        metrics=TokenMetrics(),
        run_dir=run_dir,
        progress=False,
        tensorboard=False,
        config={"hidden": 12, "rule": repr(rule)},
    )
    opts.update(kw)
    return Trainer(model, losses.cross_entropy, rule, **opts)


class StopAt(Callback):
    """Ask the trainer to stop once ``n`` updates are done."""

    def __init__(self, n: int) -> None:
        self.n = n

    def on_update(self, trainer, update, stepped):
        trainer.should_stop = trainer.counters.updates >= self.n


def params(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}


@pytest.mark.parametrize(
    "make_rule, mode, k, dropout",
    [
        (lambda: TBPTT(8), "stored", 8, 0.1),
        # the engine rebuilds a stored window by re-running its chunks, which draws new dropout
        # masks: exact only without randomness in the forward pass
        (lambda: TBPTT(4, 10), "stored", 4, 0.0),
        (lambda: TBPTT(4, 10), "recompute", 4, 0.1),
        (lambda: TBPTT(6, 3), "stored", 5, 0.1),  # chunks of 5 steps, updates every 6: pending
        # the estimators: random chunk lengths from the rule's own generator (saved with it)
        (lambda: VariableLength(6, seed=1), "stored", 8, 0.1),
        (lambda: ARTBP(c=0.2, seed=1), "stored", 8, 0.1),
    ],
    ids=["k1=k2", "k2>k1-stored", "k2>k1-recompute", "k2<k1", "variable", "artbp"],
)
def test_resume_is_bitwise_exact(tmp_path, make_rule, mode, k, dropout):
    """Die after a checkpoint, build everything anew, resume: the same final weights, bit for bit
    (shuffled documents, dropout and a cosine schedule included, so the RNG, data position and
    schedule are restored)."""
    total = 60
    straight = make_trainer(tmp_path / "a", make_rule(), mode, dropout)
    straight.fit(batcher(k, shuffle=True), updates=total)

    first = make_trainer(
        tmp_path / "b", make_rule(), mode, dropout, checkpoint_every=7, callbacks=[StopAt(17)]
    )
    first.fit(batcher(k, shuffle=True), updates=total)
    *_, mid, final = find_checkpoints(tmp_path / "b" / "checkpoints")
    final.unlink()  # as if killed after update 17: resume from the one before
    assert 7 <= load_checkpoint(mid)["counters"]["updates"] < 17
    resumed = make_trainer(tmp_path / "b", make_rule(), mode, dropout, checkpoint_every=7)
    torch.manual_seed(123)  # a different global RNG state: the checkpoint must restore it
    result = resumed.fit(batcher(k, shuffle=True), updates=total, resume=tmp_path / "b")
    assert result.updates >= total
    a, b = params(straight), params(resumed)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert straight.counters.epoch == resumed.counters.epoch >= 1


def test_resume_of_a_list_of_chunks(tmp_path):
    """Streams without state_dict (a list) resume by skipping the chunks already consumed."""
    x = tokens(800).view(4, 200)
    chunks = [Chunk(x[:, a : a + 9], x[:, a + 1 : a + 10]) for a in range(0, 190, 9)]
    straight = make_trainer(tmp_path / "a", TBPTT(9))
    straight.fit(chunks, updates=30)
    first = make_trainer(tmp_path / "b", TBPTT(9), callbacks=[StopAt(10)])
    first.fit(chunks, updates=30)
    resumed = make_trainer(tmp_path / "b", TBPTT(9))
    resumed.fit(chunks, updates=30, resume=tmp_path / "b")
    for k, v in params(straight).items():
        assert torch.equal(v, params(resumed)[k]), k


def test_fit_learns_and_logs(tmp_path):
    trainer = make_trainer(tmp_path, TBPTT(8), log_every=5)
    before = evaluate(trainer.model, losses.cross_entropy, batcher(), metrics=TokenMetrics())
    result = trainer.fit(batcher(), val=batcher(16), updates=60, eval_every=30)
    assert result.val is not None and result.val["bpc"] < before["bpc"] - 0.5
    assert result.stop_reason == "updates" and result.steps == 60 and result.skipped == 0
    kinds = [r["kind"] for r in trainer.history]
    assert kinds.count("val") == 2 and kinds.count("train") == 12
    rec = trainer.history[0]
    for key in ("loss", "bpc", "ppl", "lr", "grad_norm", "tokens_per_s", "peak_mem_mb", "time"):
        assert key in rec, key
    assert (tmp_path / "metrics.jsonl").exists()
    assert [p.name for p in find_checkpoints(tmp_path / "checkpoints")] == ["step-00000060.pt"]


def test_epochs_budget_and_bptt_flush():
    """BPTT: one update per epoch, made by the flush at the epoch's end."""
    x = torch.sin(torch.linspace(0, 20, 121)).view(1, -1, 1)
    chunks = [Chunk(x[:, a : a + 30], x[:, a + 1 : a + 31]) for a in range(0, 120, 30)]
    torch.manual_seed(0)
    result = fit(
        SeriesRNN(hidden=8),
        losses.mse,
        chunks,
        rule=BPTT(),
        epochs=3,
        device="cpu",
        progress=False,
        metrics=SeriesMetrics(2.0),
    )
    assert (result.updates, result.epochs, result.stop_reason) == (3, 3, "epochs")
    assert result.train == {} or "rmse" in result.train


class NaNLoss:
    """Cross-entropy, NaN during the chosen updates (0-based)."""

    def __init__(self, trainer: Trainer, bad: set[int]) -> None:
        self.trainer, self.bad = trainer, bad

    def __call__(self, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        out = losses.cross_entropy(y, t)
        return out * math.nan if self.trainer.counters.updates in self.bad else out


def test_nonfinite_loss_is_skipped_and_counted():
    trainer = make_trainer(None, TBPTT(8))
    trainer.loss_fn = trainer.engine.loss_fn = NaNLoss(trainer, {3, 4, 9})
    snapshots = []

    class Spy(Callback):
        def on_update(self, trainer, update, stepped):
            snapshots.append((update.index, stepped, params(trainer)))

    trainer.callbacks.append(Spy())
    result = trainer.fit(batcher(), updates=12)
    assert result.skipped == 3 and result.steps == 9
    stepped = {i: s for i, s, _ in snapshots}
    assert [i for i, s in stepped.items() if not s] == [3, 4, 9]
    for i, s, p in snapshots:
        if not s:  # nothing changed by a skipped update
            prev = snapshots[i - 1][2]
            assert all(torch.equal(p[k], prev[k]) for k in p)


def test_nonfinite_in_a_row_stops_with_a_clear_message(tmp_path):
    trainer = make_trainer(tmp_path, TBPTT(8), max_nonfinite=4, checkpoint_every=2)
    trainer.loss_fn = trainer.engine.loss_fn = NaNLoss(trainer, set(range(5, 100)))
    with pytest.raises(NonFiniteError, match="4 updates in a row had a NaN or inf loss"):
        trainer.fit(batcher(), updates=50)
    assert trainer.counters.skipped == 4 and trainer.counters.updates == 9
    # skipped updates never touch the weights, so every checkpoint holds finite ones
    newest = load_checkpoint(find_checkpoints(tmp_path / "checkpoints")[-1])
    assert all(torch.isfinite(t).all() for t in newest["model"].values())


class NaNGrad(torch.autograd.Function):
    """Identity forward; NaN gradient backward (when switched on)."""

    on = False

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        return g * math.nan if NaNGrad.on else g


def test_nonfinite_gradient_is_skipped():
    trainer = make_trainer(None, TBPTT(8), clip=None)

    def loss(y, t):
        return losses.cross_entropy(NaNGrad.apply(y), t)

    trainer.loss_fn = trainer.engine.loss_fn = loss

    class Toggle(Callback):
        def on_update(self, trainer, update, stepped):
            NaNGrad.on = update.index in (2, 3)  # the next two updates get NaN gradients

    trainer.callbacks.append(Toggle())
    try:
        result = trainer.fit(batcher(), updates=8)
    finally:
        NaNGrad.on = False
    assert result.skipped == 2 and result.steps == 6
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


class HalfLr(TruncationRule):
    """TBPTT(5) asking for half the learning rate on odd updates (as variable-length BPTT does)."""

    def next_length(self, start):
        return 5

    def cut(self, start, stop):
        return start

    def lr_scale(self, start, stop):
        return 0.5 if (start // 5) % 2 else 1.0


@pytest.mark.filterwarnings("ignore:Seems like `optimizer.step\\(\\)` has been overridden")
def test_lr_scale_applies_to_that_step_only():
    trainer = make_trainer(None, HalfLr(), schedule="constant", warmup=0)
    seen = []
    step = trainer.optimizer.step

    def spy(*a, **kw):
        seen.append(trainer.optimizer.param_groups[0]["lr"])
        return step(*a, **kw)

    trainer.optimizer.step = spy  # type: ignore[method-assign]
    trainer.fit(batcher(5), updates=4)
    assert seen == [1e-2, 5e-3, 1e-2, 5e-3]
    assert trainer.optimizer.param_groups[0]["lr"] == 1e-2


def test_evaluate_carries_the_state_across_chunks():
    """Evaluating chunk by chunk equals one forward over the whole rows."""
    torch.manual_seed(0)
    model = CharRNN(11, embed=6, hidden=12)
    x = tokens(401).view(1, -1).repeat(3, 1)  # (3, 401)
    chunks = [Chunk(x[:, a : min(a + 37, 400)], x[:, a + 1 : a + 38]) for a in range(0, 400, 37)]
    got = evaluate(model, losses.cross_entropy, chunks, metrics=TokenMetrics(), device="cpu")
    with torch.no_grad():
        logits, _ = model(x[:, :-1], None)
        want = float(losses.cross_entropy(logits, x[:, 1:]).mean())
    assert got["loss"] == pytest.approx(want, rel=1e-5)
    assert got["tokens"] == 3 * 400


def test_series_metrics_in_data_units():
    m = SeriesMetrics(scale=10.0)
    m.accumulate(
        torch.zeros(1, 4, 1), torch.ones(1, 4, 1), torch.tensor([[True, True, True, False]])
    )
    assert m.summary() == {"mae": 10.0}
    assert m.from_loss(0.25)["rmse"] == pytest.approx(5.0)


# -- checkpoint files ----------------------------------------------------------------------------


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    """A failure while writing leaves the previous checkpoint untouched and no stray file."""
    folder = tmp_path / "checkpoints"
    good = save_checkpoint({"x": torch.ones(3)}, folder / "step-00000001.pt")
    before = good.read_bytes()

    def broken_save(obj, f, *a, **kw):
        f.write(b"partial")
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="No space"):
        save_checkpoint({"x": torch.zeros(3)}, folder / "step-00000002.pt")
    assert sorted(p.name for p in folder.iterdir()) == ["step-00000001.pt"]
    assert good.read_bytes() == before


def test_corrupt_checkpoint_is_a_clear_error_and_the_previous_one_is_kept(tmp_path):
    trainer = make_trainer(tmp_path, TBPTT(8), checkpoint_every=5)
    trainer.fit(batcher(), updates=10)
    old, new = find_checkpoints(tmp_path / "checkpoints")
    old_bytes = old.read_bytes()
    new.write_bytes(new.read_bytes()[:1000])  # truncated, as by a crash without atomic writes
    again = make_trainer(tmp_path, TBPTT(8), checkpoint_every=5)
    with pytest.raises(CheckpointError, match="corrupt or incomplete") as e:
        again.fit(batcher(), updates=20, resume=tmp_path)
    assert str(old) in str(e.value)  # names the good one to resume from
    assert old.read_bytes() == old_bytes
    # resuming from the previous one works, and moves the abandoned newer file aside
    again = make_trainer(tmp_path, TBPTT(8), checkpoint_every=3)
    again.fit(batcher(), updates=20, resume=old)
    assert [p.name for p in find_checkpoints(tmp_path / "checkpoints")][-1] == "step-00000020.pt"
    assert (tmp_path / "abandoned-1" / "step-00000010.pt").exists()


def test_mismatched_checkpoint_is_a_clear_error(tmp_path):
    make_trainer(tmp_path, TBPTT(8)).fit(batcher(), updates=3)
    other = make_trainer(tmp_path, TBPTT(8), config={"hidden": 99, "rule": repr(TBPTT(8))})
    with pytest.raises(CheckpointError, match=r"other settings: hidden=12 \(now 99\)"):
        other.fit(batcher(), updates=6, resume=tmp_path)
    torch.manual_seed(0)
    small = Trainer(
        CharRNN(11, embed=6, hidden=5), losses.cross_entropy, TBPTT(8), device="cpu", progress=False
    )
    with pytest.raises(CheckpointError, match="model of another shape"):
        small.fit(batcher(), updates=6, resume=tmp_path)


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "step-00000001.pt"
    torch.save({"weights": torch.ones(1)}, path)
    with pytest.raises(CheckpointError, match="not a tbptt training checkpoint"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="nothing' does not exist"):
        make_trainer(None, TBPTT(8)).fit(batcher(), updates=2, resume=tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="holds no checkpoint"):
        make_trainer(None, TBPTT(8)).fit(batcher(), updates=2, resume=tmp_path / "empty")


def test_bad_arguments_name_the_argument():
    model = nn.LSTM(1, 2, batch_first=True)
    with pytest.raises(ValueError, match="lr must be a positive number, got -1"):
        Trainer(model, losses.mse, TBPTT(2), lr=-1, device="cpu")
    with pytest.raises(ValueError, match="schedule must be one of"):
        Trainer(model, losses.mse, TBPTT(2), schedule="step", device="cpu")
    with pytest.raises(ValueError, match="amp must be one of"):
        Trainer(model, losses.mse, TBPTT(2), amp="fp8", device="cpu")
    with pytest.raises(TypeError, match="one-shot iterator"):
        Trainer(model, losses.mse, TBPTT(2), device="cpu", progress=False).fit(iter([]))


def test_amp_is_skipped_cleanly_on_cpu():
    model = SeriesRNN(hidden=4)
    auto = Trainer(model, losses.mse, TBPTT(2), amp="auto", device="cpu")
    assert auto.amp_dtype is None and auto.scaler is None
    with pytest.warns(UserWarning, match="runs on CUDA only"):
        explicit = Trainer(model, losses.mse, TBPTT(2), amp="fp16", device="cpu")
    assert explicit.scaler is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_amp_fp16_on_cuda_trains():
    x = torch.sin(torch.linspace(0, 20, 201)).view(1, -1, 1)
    chunks = [Chunk(x[:, a : a + 20], x[:, a + 1 : a + 21]) for a in range(0, 200, 20)]
    torch.manual_seed(0)
    trainer = Trainer(SeriesRNN(hidden=16), losses.mse, TBPTT(20), amp="fp16", device="cuda")
    result = trainer.fit(chunks, updates=50)
    assert trainer.scaler is not None and result.steps + trainer.counters.amp_overflows == 50


def test_grad_scaler_path_matches_unscaled_training():
    """The fp16 path's loss scaling (the engine's loss times the scale, unscale before clipping,
    scaler.step) gives the unscaled updates; checked on the CPU in float32 with a CPU scaler."""
    plain = make_trainer(None, TBPTT(8), dropout=0.0, log_every=5)
    plain.fit(batcher(), updates=10)
    scaled = make_trainer(None, TBPTT(8), dropout=0.0, log_every=5)
    scaled.scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    scaled._loss_scale = 1024.0
    scaled.engine.loss_fn = scaled._scaled_loss
    scaled.fit(batcher(), updates=10)
    for k, v in params(plain).items():
        torch.testing.assert_close(params(scaled)[k], v, rtol=1e-5, atol=1e-6)
    assert [r["loss"] for r in scaled.history] == pytest.approx([r["loss"] for r in plain.history])


def test_tensorboard_logs_when_installed(tmp_path):
    pytest.importorskip("tensorboard")
    trainer = make_trainer(tmp_path, TBPTT(8), tensorboard=True, log_every=2)
    trainer.fit(batcher(), val=batcher(16), updates=4, eval_every=2)
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
