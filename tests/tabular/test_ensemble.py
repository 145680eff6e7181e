"""The classification ensemble: independent members, averaged probabilities, the defaults."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from tbptt.data import StreamBatcher
from tbptt.tabular.dataset import CLASSIFY_STEPS_PER_RUN, data_defaults
from tbptt.tabular.model import Ensemble, ensemble_cross_entropy, mean_probabilities
from tbptt.train.config import RunConfig
from tbptt.train.evaluation import evaluate
from tbptt.train.metrics import Metrics


class _Ends(Metrics):
    def reset(self) -> None:
        self.out: list[torch.Tensor] = []

    def accumulate(self, outputs: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> None:
        self.out.append(outputs[mask.bool()])


def _ensemble(members: int = 3) -> Ensemble:
    torch.manual_seed(0)
    return Ensemble(2, 4, members=members, hidden=5, pool=True, zero_head=False).double()


def test_each_member_gets_the_gradient_of_its_own_cross_entropy():
    model = _ensemble()
    x = torch.randn(3, 6, 2, dtype=torch.float64)
    y = torch.tensor([[0], [3], [1]])  # (B, L=1): a label at the last step
    out, _ = model(x, None)
    ensemble_cross_entropy(3)(out[:, -1:], y).sum().backward()
    for member in model.members:  # reference: the member alone, its plain loss / 3
        got = [p.grad.clone() for p in member.parameters()]
        member.zero_grad()
        logits, _ = member(x, None)  # (B, T, 4)
        loss = torch.nn.functional.cross_entropy(logits[:, -1], y[:, 0], reduction="sum") / 3
        loss.backward()
        for g, p in zip(got, member.parameters()):
            torch.testing.assert_close(g, p.grad)
    ids = [{id(p) for p in m.parameters()} for m in model.members]
    assert not (ids[0] & ids[1]) and not (ids[1] & ids[2])  # nothing shared


def test_ensemble_streamed_with_resets_equals_the_averaged_members_alone():
    model = _ensemble()
    lengths = [7, 3, 9, 4]
    xs = [torch.randn(n, 2, dtype=torch.float64) for n in lengths]
    ys = [torch.tensor(i % 4) for i in range(len(lengths))]
    stream = StreamBatcher(xs, ys, batch_size=1, chunk_len=5, target_at="end")
    ends = _Ends()
    evaluate(model, ensemble_cross_entropy(3), stream, metrics=ends, device="cpu")
    streamed = mean_probabilities(torch.cat(ends.out), 3)  # (4, 4)
    with torch.no_grad():
        alone = torch.stack(
            [
                sum(torch.softmax(m(x.unsqueeze(0), None)[0][0, -1], -1) for m in model.members) / 3
                for x in xs
            ]
        )
    torch.testing.assert_close(streamed, alone)


def test_members_default_four_cross_fitted_and_an_ensemble_shares_the_step_budget(tmp_path):
    rng = np.random.default_rng(0)
    n, t = 128, 400  # two channels: no patches; batch 32 x k1 400 steps per update
    frame = pd.DataFrame(
        {
            "id": np.repeat(np.arange(n), t),
            "t": np.tile(np.arange(t), n),
            "a": rng.normal(size=n * t),
            "b": rng.normal(size=n * t),
            "label": np.repeat(np.arange(n) % 2, t),
        }
    )
    path = tmp_path / "c.csv"
    frame.to_csv(path, index=False)
    base = {"task": "classify", "data": str(path), "target": "label", "id": "id", "time": "t"}
    four = data_defaults(RunConfig(**base))  # cross-fitted: one member per fold
    one = data_defaults(RunConfig(**base, members=1))
    three = data_defaults(RunConfig(**base, members=3))
    assert (four.members, four.folds, one.members, three.members) == (4, 4, 1, 3)
    per_update = one.batch_size * one.k1  # 32 x 400 steps; the step budget binds
    assert one.updates == CLASSIFY_STEPS_PER_RUN // per_update
    assert three.updates == max(200, CLASSIFY_STEPS_PER_RUN // (3 * per_update))
    assert four.updates == max(200, CLASSIFY_STEPS_PER_RUN // (4 * per_update))


def test_members_refused_for_regression(tmp_path):
    rows = [(t, float(np.sin(t / 3))) for t in range(60)]
    path = tmp_path / "f.csv"
    pd.DataFrame(rows, columns=["t", "y"]).to_csv(path, index=False)
    with pytest.raises(ValueError, match="--members 3: an ensemble serves --task classify"):
        data_defaults(
            RunConfig(task="regress", data=str(path), target="y", time="t", season=1, members=3)
        )
    with pytest.raises(ValueError, match="members must be a positive integer, got 0"):
        RunConfig(task="classify", members=0).check()
