"""Data-parallel TBPTT: two gloo ranks on CPU equal one process on the union of their rows.

Why the equality is exact: rank r holds the global rows r, r + 2, ... of the stream
(``TokenBatcher(world_size=2, rank=r)``); one process with twice the batch holds them all. With
``reduction="mean"`` each rank's gradient is (sum of its injected losses' gradients) / (its count
n_r). ``average="tokens"`` forms sum_r n_r g_r / sum_r n_r = (sum over all rows) / (total count):
the single process's gradient, whatever the masks do. ``average="ranks"`` (DDP's plain mean)
gives the same only when n_0 = n_1; the "equal" scenario has no document masks, so every row
has the same number of unmasked steps. Both run TBPTT(3, 7) in stored mode (each update runs the
loss backward plus chained backward calls across graph breaks), fed in pieces of 5 steps.

All scenarios run in one spawn of two processes (process start-up dominates the cost).
"""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import tbptt
from tbptt import TBPTT, Engine
from tbptt.data import TokenBatcher
from tbptt.integrations.distributed import (
    DistributedEngine,
    all_reduce_gradients,
    check_sharding,
    load_checkpoint,
    save_checkpoint,
)

VOCAB, B = 11, 2  # B rows per rank


class TinyLM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, 6)
        self.lstm = nn.LSTM(6, 7, batch_first=True)
        self.head = nn.Linear(7, VOCAB)

    def forward(self, x, state):  # x (B, T) -> (B, T, V)
        y, state = self.lstm(self.embed(x), state)
        return self.head(y), state


def tokens(n: int = 4 * B * 20 + 1) -> torch.Tensor:
    return torch.randint(VOCAB, (n,), generator=torch.Generator().manual_seed(3))


SCENARIOS = {
    # name: (average, mode, doc_starts)
    "equal": ("ranks", "stored", None),
    "tokens": ("tokens", "stored", [0, 13, 30, 31, 77, 120]),
    "recompute": ("tokens", "recompute", [0, 13, 30, 77, 120]),
}


@pytest.fixture(autouse=True)
def _float32_one_thread():
    """Other test modules switch the default dtype to float64 (it changes the init's draws)."""
    dtype, threads = torch.get_default_dtype(), torch.get_num_threads()
    torch.set_default_dtype(torch.float32)
    torch.set_num_threads(1)
    yield
    torch.set_default_dtype(dtype)
    torch.set_num_threads(threads)


def build(world: int, rank: int, name: str, batch: int = B):
    """Model, optimizer, engine and data of one rank (world=1: the single-process reference)."""
    average, mode, docs = SCENARIOS[name]
    torch.manual_seed(rank + 100)  # ranks start different: DistributedEngine broadcasts rank 0
    model = TinyLM().double()
    if rank == 0:
        torch.manual_seed(0)
        model = TinyLM().double()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    engine = DistributedEngine(
        Engine(model, tbptt.losses.cross_entropy, TBPTT(3, 7), mode=mode), average=average
    )
    data = TokenBatcher(
        tokens(), batch_size=batch, chunk_len=5, doc_starts=docs, world_size=world, rank=rank
    )
    return model, opt, engine, data


def train(model, opt, engine, data, stop_after: int | None = None) -> list[float]:
    """One epoch; with ``stop_after``, stop after that many chunks (no flush)."""
    losses = []
    for i, chunk in enumerate(data):
        for update in engine.feed(*chunk):
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            losses.append(update.loss.item())
        if stop_after is not None and i + 1 == stop_after:
            return losses
    for _update in engine.flush():
        opt.step()
    return losses


def _error_of(call) -> str | None:
    try:
        call()
    except ValueError as e:
        return str(e)
    return None


def _worker(rank: int, world: int, tmp: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{tmp}/store", rank=rank, world_size=world)
    out: dict = {}
    for name in SCENARIOS:
        model, opt, engine, data = build(world, rank, name)
        out[name] = (train(model, opt, engine, data), [p.detach() for p in model.parameters()])

    # checkpoint mid-epoch (pending steps, a retained stored-mode window), then resume
    model, opt, engine, data = build(world, rank, "tokens")
    first = train(model, opt, engine, data, stop_after=3)
    save_checkpoint(f"{tmp}/ckpt", model=model, engine=engine, optimizer=opt, data=data)
    out["at_save"] = [p.detach().clone() for p in model.parameters()]
    rest = train(model, opt, engine, data)
    model2, opt2, engine2, data2 = build(world, rank, "tokens")
    load_checkpoint(f"{tmp}/ckpt", model=model2, engine=engine2, optimizer=opt2, data=data2)
    resumed = train(model2, opt2, engine2, data2)
    out["resume"] = (first, rest, resumed, [p.detach() for p in model.parameters()])
    out["resumed_params"] = [p.detach() for p in model2.parameters()]

    # rank files from two different saves (rank 0 at a later update than rank 1) must not load
    model3, opt3, engine3, data3 = build(world, rank, "tokens")
    train(model3, opt3, engine3, data3, stop_after=1)
    save_checkpoint(f"{tmp}/early", model=model3, engine=engine3, optimizer=opt3, data=data3)
    if rank == 0:
        shutil.copy(f"{tmp}/ckpt/rank00000-of-00002.pt", f"{tmp}/early/rank00000-of-00002.pt")
    dist.barrier()
    out["mixed"] = _error_of(
        lambda: load_checkpoint(
            f"{tmp}/early", model=model3, engine=engine3, optimizer=opt3, data=data3
        )
    )
    # a save where the ranks stand at different updates is refused on every rank, unwritten
    # (a local engine per rank: rank 1 has fed one piece more)
    local_model = TinyLM()
    local = Engine(local_model, tbptt.losses.cross_entropy, TBPTT(3))
    for _ in range(rank + 1):
        x = tokens(2 * 3).view(2, 3)
        for _update in local.feed(x, x):
            pass
    out["uneven_save"] = _error_of(
        lambda: save_checkpoint(f"{tmp}/uneven", model=local_model, engine=local)
    )
    out["uneven_files"] = os.listdir(f"{tmp}/uneven") if os.path.exists(f"{tmp}/uneven") else []

    # bad configuration: rank 1 feeds 3 rows, rank 0 feeds 2
    x = torch.zeros(B + rank, 4, dtype=torch.long)
    try:
        engine2.feed(x, x)
        out["mismatch"] = None
    except ValueError as e:
        out["mismatch"] = str(e)

    # the gradient helper alone: None everywhere stays None; None on one rank counts as zero
    a, b = nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(3))
    b.grad = torch.full((3,), float(rank + 1)) if rank == 1 else None
    all_reduce_gradients([a, b])
    out["helper"] = (a.grad, b.grad.clone())
    a.grad, b.grad = torch.ones(2) * (rank + 1), torch.ones(3)
    all_reduce_gradients([a, b], weight=float(rank + 1))  # (1*1 + 2*2) / 3
    out["helper_weighted"] = a.grad.clone()
    torch.save(out, f"{tmp}/out{rank}.pt")
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_ranks():
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_worker, args=(2, tmp), nprocs=2, join=True)
        outs = [torch.load(f"{tmp}/out{r}.pt", weights_only=False) for r in range(2)]
        ckpt = f"{tmp}/ckpt"
        files = sorted(os.listdir(ckpt))
        wrong_world = None
        model, opt, engine, data = build(1, 0, "tokens", batch=2 * B)
        try:
            load_checkpoint(ckpt, model=model, engine=engine, optimizer=opt, data=data)
        except ValueError as e:
            wrong_world = str(e)
        # streams=False: the weights load on another world size, the streams start anew
        load_checkpoint(ckpt, model=model, engine=engine, streams=False)
        weights_only = [p.detach().clone() for p in model.parameters()]
        yield outs, files, wrong_world, weights_only


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_two_ranks_equal_one_process_on_the_union_of_their_rows(two_ranks, name):
    outs = two_ranks[0]
    model, opt, engine, data = build(1, 0, name, batch=2 * B)
    losses = train(model, opt, engine, data)
    assert len(losses) > 10
    for rank in range(2):
        got_losses, got_params = outs[rank][name]
        assert got_losses == pytest.approx(losses, abs=1e-9)  # the global loss, on every rank
        for got, want in zip(got_params, model.parameters()):
            torch.testing.assert_close(got, want.detach(), rtol=0, atol=1e-6)


def test_checkpoint_resume_across_two_ranks_continues_exactly(two_ranks):
    outs, files, _, _ = two_ranks
    assert files == ["rank00000-of-00002.pt", "rank00001-of-00002.pt"]
    for rank in range(2):
        first, rest, resumed, params = outs[rank]["resume"]
        assert len(first) > 0 and len(rest) > 0
        assert resumed == rest  # the same losses after the restart, bit for bit
        for a, b in zip(params, outs[rank]["resumed_params"]):
            assert torch.equal(a, b)
    for a, b in zip(outs[0]["resumed_params"], outs[1]["resumed_params"]):
        assert torch.equal(a, b)  # the ranks stayed identical


def test_resume_with_another_world_size_is_a_clear_error(two_ranks):
    _, _, wrong_world, weights_only = two_ranks
    assert wrong_world is not None
    assert "world_size=2" in wrong_world and "world_size=1" in wrong_world
    assert "streams=False" in wrong_world
    # streams=False loaded the weights regardless
    saved = two_ranks[0][0]["at_save"]
    for a, b in zip(weights_only, saved):
        assert torch.equal(a, b)


def test_rank_files_of_different_saves_stop_every_rank_with_one_message(two_ranks):
    outs = two_ranks[0]
    assert outs[0]["mixed"] is not None and outs[0]["mixed"] == outs[1]["mixed"]
    msg = outs[0]["mixed"]
    assert "the ranks disagree on" in msg and "updates" in msg and "rank 0:" in msg
    assert "rank 1:" in msg and "one save_checkpoint call" in msg


def test_saving_ranks_at_different_updates_is_refused_everywhere(two_ranks):
    outs = two_ranks[0]
    assert outs[0]["uneven_save"] is not None and outs[0]["uneven_save"] == outs[1]["uneven_save"]
    assert "save_checkpoint: the ranks disagree on" in outs[0]["uneven_save"]
    assert outs[0]["uneven_files"] == [] and outs[1]["uneven_files"] == []


def test_ranks_feeding_different_batch_sizes_is_a_clear_error(two_ranks):
    for rank in range(2):
        msg = two_ranks[0][rank]["mismatch"]
        assert msg is not None
        assert "rank 0: (B, T) = (2, 4)" in msg and "rank 1: (B, T) = (3, 4)" in msg
        assert "batch_size" in msg


def test_all_reduce_gradients_helper(two_ranks):
    for rank in range(2):
        a_grad, b_grad = two_ranks[0][rank]["helper"]
        assert a_grad is None  # no rank had a gradient: stays None (optimizers skip it)
        assert torch.equal(b_grad, torch.full((3,), 1.0))  # (0 + 2) / 2
        assert torch.allclose(two_ranks[0][rank]["helper_weighted"], torch.full((2,), 5 / 3))


# -- single-process errors ---------------------------------------------------------------------


def test_batcher_not_sharded_for_this_rank_is_a_clear_error():
    data = TokenBatcher(tokens(), batch_size=2, chunk_len=5, world_size=2, rank=1)
    with pytest.raises(
        ValueError, match=r"world_size=2, rank=1.*rank 0 of 1.*world_size=1, rank=0"
    ):
        check_sharding(data)


def test_world_size_that_cannot_split_the_streams_is_a_clear_error():
    with pytest.raises(ValueError, match="world_size"):
        TokenBatcher(torch.arange(9), batch_size=2, chunk_len=4, world_size=8, rank=0)


def test_bad_arguments_are_clear_errors():
    engine = Engine(TinyLM(), tbptt.losses.cross_entropy, TBPTT(3))
    with pytest.raises(TypeError, match=r"tbptt\.Engine"):
        DistributedEngine(TinyLM())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="average must be"):
        DistributedEngine(engine, average="mean")  # type: ignore[arg-type]
    summed = Engine(TinyLM(), tbptt.losses.cross_entropy, TBPTT(3), reduction="sum")
    with pytest.raises(ValueError, match="average='sum'"):
        DistributedEngine(summed, average="tokens")
    assert DistributedEngine(summed).average == "sum"
    accumulating = Engine(TinyLM(), tbptt.losses.cross_entropy, TBPTT(3), zero_grad=False)
    with pytest.raises(ValueError, match="zero_grad=True"):
        DistributedEngine(accumulating)
    with pytest.raises(ValueError, match="op must be"):
        all_reduce_gradients(TinyLM(), op="max")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="weight is only used with op='mean'"):
        all_reduce_gradients(TinyLM(), op="sum", weight=2.0)
    with (
        tempfile.TemporaryDirectory() as tmp,
        pytest.raises(FileNotFoundError, match="no checkpoint"),
    ):
        load_checkpoint(tmp, model=TinyLM(), engine=engine)


def test_single_process_is_a_plain_engine():
    """Without a process group the wrapper changes nothing (the same script runs with python)."""
    model, opt, engine, data = build(1, 0, "equal", batch=2 * B)
    ref_model, ref_opt, _, ref_data = build(1, 0, "equal", batch=2 * B)
    ref_engine = Engine(ref_model, tbptt.losses.cross_entropy, TBPTT(3, 7))
    assert train(model, opt, engine, data) == train(ref_model, ref_opt, ref_engine, ref_data)


def test_ddp_example_runs_under_torchrun_and_resumes(tmp_path):
    """examples/ddp_char_lm.py with 2 gloo processes, saved and resumed (as docs/distributed.md)."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(root / "src"), env.get("PYTHONPATH", "")])
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    cmd += [str(root / "examples" / "ddp_char_lm.py"), "--updates", "3", "--batch", "2"]
    cmd += ["--ckpt", str(tmp_path)]
    for extra in ([], ["--resume"]):
        run = subprocess.run(cmd + extra, env=env, capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr[-3000:]
        assert "world_size=2 (gloo): 3 updates" in run.stdout
    assert sorted(os.listdir(tmp_path)) == ["rank00000-of-00002.pt", "rank00001-of-00002.pt"]
