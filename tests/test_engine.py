"""The engine's equalities (docs/semantics.md §2-§4), training with a real optimizer, and its errors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from reference import TanhStep, reference_grads
from test_engine_reference import assert_same, engine_grads, make, step_loss, stream
from torch import nn

import tbptt
from tbptt import BPTT, TBPTT, Engine

pytestmark = pytest.mark.usefixtures("float64")


class CharModel(nn.Module):
    """Embedding -> 2-layer LSTM -> linear head, word_language_model style."""

    def __init__(self, vocab: int = 7, hidden: int = 6, dropout: float = 0.0) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, hidden)
        self.lstm = nn.LSTM(hidden, hidden, num_layers=2, batch_first=True, dropout=dropout)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, x, state):  # x (B, T) long
        y, state = self.lstm(self.embed(x), state)  # (B, T, H)
        return self.head(y), state  # (B, T, V)


def tokens(batch=3, length=23, vocab=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    data = torch.randint(vocab, (batch, length + 1), generator=g)
    return data[:, :-1], data[:, 1:]  # (B, T) inputs and next-token targets


def params_of(model):
    return [p.detach().clone() for p in model.parameters()]


# -- equalities ------------------------------------------------------------------------------


def test_tbptt_with_k_at_least_stream_length_is_bptt():
    model, _, _, _ = make("lstm")
    params = list(model.parameters())
    x, y, reset, mask = stream(11, seed=3)
    want = engine_grads(Engine(model, tbptt.losses.mse, BPTT()), params, [(x, y, reset, mask)])
    for k in (11, 12, 40):
        got = engine_grads(Engine(model, tbptt.losses.mse, TBPTT(k)), params, [(x, y, reset, mask)])
        assert_same(got, want)


@pytest.mark.parametrize("k", [1, 4, 5])
def test_k1_equals_k2_is_the_hand_written_loop(k):
    """The familiar loop: detach, forward a chunk, mean loss, backward, step (short last chunk too)."""
    x, y = tokens(length=23)
    torch.manual_seed(1)
    hand = CharModel()
    ours = CharModel()
    ours.load_state_dict(hand.state_dict())
    opt_hand = torch.optim.SGD(hand.parameters(), lr=0.5)
    opt_ours = torch.optim.SGD(ours.parameters(), lr=0.5)

    hidden = None
    for a in range(0, x.shape[1], k):
        hidden = None if hidden is None else tuple(h.detach() for h in hidden)
        logits, hidden = hand(x[:, a : a + k], hidden)
        loss = F.cross_entropy(logits.reshape(-1, 7), y[:, a : a + k].reshape(-1))
        opt_hand.zero_grad()
        loss.backward()
        opt_hand.step()

    engine = Engine(ours, tbptt.losses.cross_entropy, TBPTT(k))
    losses = []
    for piece in (slice(0, 10), slice(10, 23)):
        for update in engine.feed(x[:, piece], y[:, piece]):
            losses.append(update.loss)
            opt_ours.step()
    for _ in engine.flush():
        opt_ours.step()
    assert len(losses) + 1 == math.ceil(23 / k) or 23 % k == 0
    for p, q in zip(hand.parameters(), ours.parameters()):
        assert torch.allclose(p, q, atol=1e-12, rtol=0)


def test_per_row_resets_equal_each_sequence_on_its_own():
    """Row 0 packs sequences of 7 and 5 steps; row 1 holds one of 12. BPTT over the stream
    equals the sum over the three sequences run alone (losses summed, / all steps)."""
    model, _, _, _ = make("lstm")
    params = list(model.parameters())
    x, y, _, _ = stream(12, seed=5)
    x, y = x[:2], y[:2]
    reset = torch.zeros(2, 12, dtype=torch.bool)
    reset[0, 7] = True
    engine = Engine(model, tbptt.losses.mse, BPTT())
    (got,) = engine_grads(engine, params, [(x, y, reset, None)])

    total = 0.0
    for row, lo, hi in ((0, 0, 7), (0, 7, 12), (1, 0, 12)):
        out, _ = model(x[row : row + 1, lo:hi], None)
        total = total + ((out - y[row : row + 1, lo:hi]) ** 2).mean(-1).sum()
    want = torch.autograd.grad(total / 24, params)
    assert_same([got], [list(want)])


def test_chunk_path_equals_step_path():
    torch.manual_seed(0)
    lstm = nn.LSTM(2, 3, batch_first=True)
    cell = nn.LSTMCell(2, 3)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(cell, name).copy_(getattr(lstm, name + "_l0"))
    x, y, reset, mask = stream(17, seed=2)
    for rule in (TBPTT(4), TBPTT(3, 7), TBPTT(5, 2), BPTT()):
        chunk = engine_grads(
            Engine(lstm, tbptt.losses.mse, rule), list(lstm.parameters()), [(x, y, reset, mask)]
        )
        step = engine_grads(
            Engine(cell, tbptt.losses.mse, rule), list(cell.parameters()), [(x, y, reset, mask)]
        )
        assert_same(step, chunk)


@pytest.mark.parametrize("kind", ["lstm", "custom"])
def test_stored_equals_recompute_with_frozen_parameters(kind):
    model, path, _, _ = make(kind)
    params = list(model.parameters())
    x, y, reset, mask = stream(30, seed=9)
    for k1, k2 in ((1, 4), (3, 7), (4, 12), (5, 6)):
        stored = engine_grads(
            Engine(model, tbptt.losses.mse, TBPTT(k1, k2), path=path), params, [(x, y, reset, mask)]
        )
        recomputed = engine_grads(
            Engine(model, tbptt.losses.mse, TBPTT(k1, k2), path=path, mode="recompute"),
            params,
            [(x, y, reset, mask)],
        )
        assert_same(stored, recomputed)


@pytest.mark.parametrize("rule", [TBPTT(4), TBPTT(3, 8), TBPTT(6, 2), BPTT()], ids=str)
@pytest.mark.parametrize("mode", ["stored", "recompute"])
def test_feeding_in_pieces_changes_nothing(rule, mode):
    model, _, _, _ = make("lstm")
    params = list(model.parameters())
    x, y, reset, mask = stream(29, seed=4)
    whole = engine_grads(
        Engine(model, tbptt.losses.mse, rule, mode=mode), params, [(x, y, reset, mask)]
    )
    for cuts in ([1, 2, 3, 10, 20], [7, 8, 15, 28], [13]):
        bounds = [0, *cuts, 29]
        pieces = [
            tuple(t[:, lo:hi] for t in (x, y, reset, mask))
            for lo, hi in zip(bounds[:-1], bounds[1:])
        ]
        assert_same(
            engine_grads(Engine(model, tbptt.losses.mse, rule, mode=mode), params, pieces), whole
        )


def test_learned_initial_state_gets_its_gradient():
    torch.manual_seed(0)
    model = TanhStep(2, 3, 3)
    h0 = nn.Parameter(torch.randn(1, 3))  # (1, H): shared by every row
    x, y, reset, mask = stream(13, seed=6)
    params = [*model.parameters(), h0]
    want = reference_grads(model, params, h0.expand(3, 3), x, y, reset, mask, step_loss, 4, 6)
    engine = Engine(model, tbptt.losses.mse, TBPTT(4, 6), path="step", init_state=h0)
    assert_same(engine_grads(engine, params, [(x, y, reset, mask)]), want)


@pytest.mark.parametrize("segments", [1, 3, "sqrt"])
def test_checkpointed_bptt_equals_bptt(segments):
    model, _, _, _ = make("lstm")
    params = list(model.parameters())
    x, y, reset, mask = stream(20, seed=8)
    want = engine_grads(Engine(model, tbptt.losses.mse, BPTT()), params, [(x, y, reset, mask)])
    got = engine_grads(
        Engine(model, tbptt.losses.mse, BPTT(), checkpoint=segments), params, [(x, y, reset, mask)]
    )
    assert_same(got, want)


def test_k2_below_k1_reports_every_step_but_trains_the_last_k2():
    model, _, _, _ = make("gru")
    x, y, _, _ = stream(10, seed=1)
    (update,) = list(Engine(model, tbptt.losses.mse, TBPTT(10, 3)).feed(x, y))
    assert (update.start, update.stop, update.cut) == (0, 10, 7)
    assert int(update.trained_count) == 3 * 3 and int(update.report_count) == 3 * 10
    assert update.outputs.shape == (3, 10, 3)


# -- training ------------------------------------------------------------------------------


class SavedTensorMeter:
    """Counts the bytes autograd keeps saved for the backward at this moment."""

    def __init__(self) -> None:
        self.live = 0

    def pack(self, t):
        return _Box(t.detach(), self)  # no grad_fn: a box must not keep its node alive

    @staticmethod
    def unpack(box):
        return box.t


class _Box:
    def __init__(self, t, meter):
        self.t, self.meter, self.size = t, meter, t.numel() * t.element_size()
        meter.live += self.size

    def __del__(self):
        self.meter.live -= self.size


@pytest.mark.parametrize("mode", ["stored", "recompute"])
def test_adam_trains_1000_updates_with_k2_above_k1_in_flat_memory(mode):
    torch.manual_seed(0)
    model = CharModel(vocab=5, hidden=8).float()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    engine = Engine(model, tbptt.losses.cross_entropy, TBPTT(4, 10), mode=mode)
    text = torch.tensor([0, 1, 2, 3, 4, 3, 2, 1] * 600)  # a periodic "language"
    rows = text[: 4 * 1200].view(4, 1200)  # (B, T)
    meter = SavedTensorMeter()
    live, first, last = [], None, None
    with torch.autograd.graph.saved_tensors_hooks(meter.pack, meter.unpack):
        for _ in range(4):  # one stream of 4 * 1199 steps: 1,196 updates
            for a in range(0, 1199, 100):
                b = min(a + 100, 1199)
                for update in engine.feed(rows[:, a:b], rows[:, a + 1 : b + 1]):
                    opt.step()
                    live.append(meter.live)
                    first = update.loss if first is None else first
                    last = update.loss
    assert engine.updates_done >= 1000
    assert max(live[100:]) <= max(live[:100])  # flat: bounded by the first updates
    assert last < 0.5 * first  # it learned


# -- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize("k1,k2", [(0, None), (-3, 4), (2.5, None), (True, None), (3, 0), (3, "5")])
def test_bad_k1_k2(k1, k2):
    with pytest.raises(ValueError, match="must be a positive integer"):
        TBPTT(k1, k2)


def test_bidirectional_is_rejected():
    with pytest.raises(ValueError, match="bidirectional"):
        Engine(nn.LSTM(2, 3, batch_first=True, bidirectional=True), tbptt.losses.mse, TBPTT(4))
    wrapped = nn.Sequential()
    wrapped.add_module("rnn", nn.GRU(2, 3, batch_first=True, bidirectional=True))
    with pytest.raises(ValueError, match=r"model\.rnn is a bidirectional GRU"):
        Engine(wrapped, tbptt.losses.mse, TBPTT(4))


def test_batch_first_mismatch_is_rejected():
    with pytest.raises(ValueError, match="batch_first=True"):
        Engine(nn.LSTM(2, 3), tbptt.losses.mse, TBPTT(4))


def test_state_of_the_wrong_batch_size():
    model = nn.GRU(2, 3, batch_first=True)
    engine = Engine(model, tbptt.losses.mse, TBPTT(4), init_state=torch.zeros(1, 5, 3))
    x, y, _, _ = stream(8, seed=0)
    with pytest.raises(ValueError, match=r"init_state has a leaf of shape \(1, 5, 3\)"):
        list(engine.feed(x, y))


def test_state_batch_dim_mismatch_names_the_fix():
    class TimeMajorState(nn.Module):  # returns its state as (H, B): not the default layout
        def forward(self, x, s):
            s = (
                x.sum(-1, keepdim=True).T
                if s is None
                else s + x.sum(-1, keepdim=True).T.expand_as(s)
            )
            return x, s.expand(4, -1)

    engine = Engine(TimeMajorState(), tbptt.losses.mse, TBPTT(2), path="step")
    x = torch.randn(3, 4, 2)
    with pytest.raises(ValueError, match="state_batch_dim"):
        list(engine.feed(x, x))


def test_nan_inputs_are_rejected():
    engine = Engine(nn.GRU(2, 3, batch_first=True), tbptt.losses.mse, TBPTT(4))
    x, y, _, _ = stream(8, seed=0)
    x[1, 3, 0] = float("nan")
    with pytest.raises(ValueError, match="inputs contains NaN or inf"):
        engine.feed(x, y)


@pytest.mark.parametrize("name", ["reset", "mask"])
def test_reset_and_mask_of_the_wrong_shape(name):
    engine = Engine(nn.GRU(2, 3, batch_first=True), tbptt.losses.mse, TBPTT(4))
    x, y, _, _ = stream(8, seed=0)
    with pytest.raises(
        ValueError, match=rf"{name} must be a \(B, T\) = \(3, 8\) bool tensor, got \(3, 7\)"
    ):
        engine.feed(x, y, **{name: torch.zeros(3, 7, dtype=torch.bool)})


def test_targets_misaligned_and_loss_of_the_wrong_shape():
    engine = Engine(nn.GRU(2, 3, batch_first=True), tbptt.losses.mse, TBPTT(4))
    x, y, _, _ = stream(8, seed=0)
    with pytest.raises(ValueError, match="targets must start with"):
        engine.feed(x, y[:, :-1])
    bad = Engine(nn.GRU(2, 3, batch_first=True), lambda out, t: F.mse_loss(out, t), TBPTT(4))
    with pytest.raises(ValueError, match="reduction='none'"):
        list(bad.feed(x, y))


def test_changing_the_batch_size_mid_stream():
    engine = Engine(nn.GRU(2, 3, batch_first=True), tbptt.losses.mse, TBPTT(4))
    x, y, _, _ = stream(8, seed=0)
    list(engine.feed(x, y))
    with pytest.raises(ValueError, match=r"Call engine\.flush"):
        engine.feed(x[:2], y[:2])


def test_an_iterator_left_unrun_is_reported():
    engine = Engine(nn.GRU(2, 3, batch_first=True), tbptt.losses.mse, TBPTT(4))
    x, y, _, _ = stream(8, seed=0)
    engine.feed(x, y)  # never iterated
    with pytest.raises(RuntimeError, match="was not run to its end"):
        engine.feed(x, y)


def test_nan_loss_skips_the_backward():
    engine = Engine(nn.GRU(2, 3, batch_first=True), tbptt.losses.mse, TBPTT(4))
    x, y, _, _ = stream(8, seed=0)
    y[0, 5] = float("inf")
    updates = list(engine.feed(x, y))
    assert [u.finite for u in updates] == [True, False]


def test_grad_scales_multiply_the_gradient_crossing_a_step_boundary():
    """s_t = w s_{t-1} + x_t, loss s_2^2 only; a factor 2 on the boundary into step 2 gives
    dL/dw = 2 s2 (s1 + 2 w s0) = 2 * 4.25 * 3.5 = 29.75 (25.5 without it)."""
    from dataclasses import dataclass

    from reference import LinearScalarRNN

    @dataclass(frozen=True)
    class Doubled(TBPTT):
        def grad_scales(self, start, stop):
            return {start + 2: 2.0}

    model = LinearScalarRNN(0.5)
    x = torch.tensor([[[1.0], [2.0], [3.0]]])  # (1, 3, 1)
    mask = torch.tensor([[False, False, True]])
    for rule, want in ((TBPTT(3), 25.5), (Doubled(3), 29.75)):
        (_,) = list(Engine(model, tbptt.losses.mse, rule, path="step").feed(x, 0 * x, mask=mask))
        assert model.w.grad.item() == pytest.approx(want)


def test_sum_reduction():
    model, _, _, _ = make("gru")
    x, y, _, _ = stream(6, seed=2)
    (mean,) = list(Engine(model, tbptt.losses.mse, TBPTT(6)).feed(x, y))
    (total,) = list(Engine(model, tbptt.losses.mse, TBPTT(6), reduction="sum").feed(x, y))
    assert total.loss.item() == pytest.approx(mean.loss.item() * 18)


@pytest.mark.parametrize(
    "rule,mode",
    [
        (TBPTT(4), "stored"),
        (TBPTT(3, 8), "stored"),
        (TBPTT(3, 8), "recompute"),
        (TBPTT(2, 9), "stored"),
        (TBPTT(6, 2), "stored"),
        (BPTT(), "stored"),
    ],
    ids=str,
)
def test_resume_from_state_dict_is_exact(rule, mode):
    """Interrupt a stream after any piece, save and reload everything (the RNG too, as a trainer
    does), and continue: the final parameters are bitwise those of the uninterrupted run, with
    dropout in the model (a stored-mode replay must draw the masks it drew the first time)."""
    import io

    x, y = tokens(batch=2, length=40, seed=3)
    reset = torch.zeros(2, 40, dtype=torch.bool)
    reset[1, 17] = True
    pieces = [(x[:, a : a + 7], y[:, a : a + 7], reset[:, a : a + 7]) for a in range(0, 40, 7)]

    def fresh():
        torch.manual_seed(0)
        model = CharModel(dropout=0.25)
        return model, torch.optim.Adam(model.parameters(), lr=0.05)

    def train(model, opt, engine, pieces, flush):
        for piece in pieces:
            for _ in engine.feed(*piece):
                opt.step()
        for _ in engine.flush() if flush else ():
            opt.step()

    model, opt = fresh()
    train(model, opt, Engine(model, tbptt.losses.cross_entropy, rule, mode=mode), pieces, True)
    want = params_of(model)

    for stop_after in (1, 3, 4):
        model, opt = fresh()
        engine = Engine(model, tbptt.losses.cross_entropy, rule, mode=mode)
        train(model, opt, engine, pieces[:stop_after], False)
        buffer = io.BytesIO()
        torch.save(
            {
                "model": model.state_dict(),
                "opt": opt.state_dict(),
                "engine": engine.state_dict(),
                "rng": torch.get_rng_state(),
            },
            buffer,
        )
        buffer.seek(0)
        saved = torch.load(buffer, weights_only=True)

        model, opt = fresh()
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["opt"])
        engine = Engine(model, tbptt.losses.cross_entropy, rule, mode=mode)
        engine.load_state_dict(saved["engine"])
        torch.set_rng_state(saved["rng"])
        train(model, opt, engine, pieces[stop_after:], True)
        for p, q in zip(params_of(model), want):
            assert torch.equal(p, q), f"stopped after piece {stop_after}"


def test_loading_a_state_dict_of_another_rule_is_refused():
    model = CharModel()
    saved = Engine(model, tbptt.losses.cross_entropy, TBPTT(3, 8)).state_dict()
    with pytest.raises(
        ValueError, match=r"rule=TBPTT\(k1=3, k2=8\), this engine has rule=TBPTT\(k1=4"
    ):
        Engine(model, tbptt.losses.cross_entropy, TBPTT(4)).load_state_dict(saved)


def test_checkpoint_with_stored_overlapping_windows_is_refused():
    with pytest.raises(ValueError, match="Use mode='recompute'"):
        Engine(CharModel(), tbptt.losses.cross_entropy, TBPTT(3, 8), checkpoint=4)
    Engine(CharModel(), tbptt.losses.cross_entropy, TBPTT(3, 8), checkpoint=4, mode="recompute")


def test_nan_losses_on_masked_steps_stay_out():
    """A padded step whose target is NaN does not poison the update (mask False there)."""
    model, _, _, _ = make("gru")
    x, y, _, _ = stream(6, seed=2)
    mask = torch.ones(3, 6, dtype=torch.bool)
    mask[1, 4:] = False
    y_nan = y.clone()
    y_nan[1, 4:] = float("nan")
    params = list(model.parameters())
    (clean,) = engine_grads(Engine(model, tbptt.losses.mse, TBPTT(6)), params, [(x, y, None, mask)])
    engine = Engine(model, tbptt.losses.mse, TBPTT(6))
    (padded,) = engine_grads(engine, params, [(x, y_nan, None, mask)])
    assert_same([padded], [clean])
    (update,) = list(Engine(model, tbptt.losses.mse, TBPTT(6)).feed(x, y_nan, mask=mask))
    assert update.finite and torch.isfinite(update.report_sum)


def _stats_after(rule, model=None, reset=None, **options):
    model = model if model is not None else nn.GRU(1, 2, batch_first=True)
    engine = Engine(model, tbptt.losses.mse, rule, **options)
    for _ in engine.feed(torch.zeros(2, 12, 1), torch.zeros(2, 12, 2), reset):
        pass
    for _ in engine.flush():
        pass
    return engine.stats


def test_stats_say_how_runs_were_split():
    """One fused call per update when nothing splits a chunk; each split named with its cause."""
    assert _stats_after(TBPTT(3)) == {
        "path": "chunk",
        "updates": 4,
        "runs": 4,
        "split_by": {},
        "compiled": None,
        "online": None,
    }
    reset = torch.zeros(2, 12, dtype=torch.bool)
    reset[0, 4] = reset[1, 4] = reset[1, 7] = True  # two steps inside chunks; step 4 in both rows
    assert _stats_after(TBPTT(3), reset=reset)["split_by"] == {"reset": 2}
    assert _stats_after(TBPTT(3, 6))["split_by"] == {}  # stored: breaks fall on chunk starts
    recompute = _stats_after(TBPTT(3, 6), mode="recompute")
    assert recompute["split_by"] == {"saved state": 3} and recompute["runs"] == 7
    assert _stats_after(BPTT(), checkpoint=4)["split_by"] == {"checkpoint segment": 2}
    artbp = _stats_after(tbptt.ARTBP(0.3, seed=0), reduction="sum")
    assert artbp["runs"] == artbp["updates"] + artbp["split_by"]["ARTBP factor"]


def test_stats_of_the_step_path_include_the_compiled_loop():
    stats = _stats_after(TBPTT(3), model=nn.GRUCell(1, 2), compile=False)
    assert stats["path"] == "step" and stats["runs"] == 4
    assert stats["compiled"]["compile"] is False and stats["compiled"]["eager_runs"] == 4
