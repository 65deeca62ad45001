"""Data-parallel training and sweeps over 2 gloo processes (spawned here, as torchrun would start them)."""

import time

import pytest
import torch
import torch.distributed as dist
from torch.testing import assert_close

import distributed_worker as W
from ganlib.data import ring_of_gaussians
from ganlib.train import train_slice
from ganlib.training import CheckpointError, Trainer, load_checkpoint, save_checkpoint
from ganlib.training import distributed as D
from ganlib.training.unrolled import UnrolledTrainer

gloo = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                          reason="needs torch.distributed with the gloo backend")


def spawn(stage: str, out, timeout: float = 90.0) -> None:
    """Run ``worker(rank, ...)`` in 2 new processes; fail (and kill them) if they take too long.

    Forked where the OS can (CPU only, so fork is safe; 4x faster than spawning fresh interpreters
    that import torch again), spawned elsewhere."""
    method = "fork" if "fork" in torch.multiprocessing.get_all_start_methods() else "spawn"
    procs = torch.multiprocessing.start_processes(W.worker, args=(W.free_port(), str(out), stage), nprocs=W.WORLD,
                                                  join=False, start_method=method)
    deadline = time.monotonic() + timeout
    while not procs.join(timeout=1.0):
        if time.monotonic() > deadline:
            for p in procs.processes:
                p.kill()
            pytest.fail(f"the 2-process stage {stage!r} did not finish in {timeout} s (a collective hangs?)")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Stage 1: a data-parallel run, a sweep, an uninterrupted run and one killed after its checkpoint;
    stage 2 (new processes): the killed run resumed."""
    out = tmp_path_factory.mktemp("ddp")
    spawn("first", out)
    spawn("resume", out)
    return out


def load(path):
    return torch.load(path, weights_only=True)


class RankStreams(Trainer):
    """One process whose batch of 2B is rank 0's B samples followed by rank 1's (same streams)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        seeds = [D.stream_seed(self.config.seed, r) for r in range(W.WORLD)]
        self.noise_rngs = [torch.Generator().manual_seed(s) for s in seeds]
        self.data_rngs = [torch.Generator().manual_seed(s + 1) for s in seeds]

    def real_batch(self, n):
        return torch.cat([self.source.sample(n // W.WORLD, g) for g in self.data_rngs])

    def fake_batch(self, n):
        return self.G(torch.cat([self.G.sample_latent(n // W.WORLD, generator=g) for g in self.noise_rngs]))


@gloo
def test_two_ranks_with_batch_b_equal_one_process_with_batch_2b(runs):
    r0, r1 = load(runs / "ddp_rank0.pt"), load(runs / "ddp_rank1.pt")
    # every rank holds the same networks, spectral norm's u and v included, and logs the same means
    assert any(k.endswith("_u") for k in r0["D"])
    assert_close(r1, r0, rtol=0, atol=0)
    one = RankStreams(*W.make_models(), ring_of_gaussians(), W.config(batch_size=2 * W.B), d_penalty=W.r1)
    one.fit()
    assert_close(r0, W.outcome(one))                 # float tolerance: the sums run in another order
    # and not by accident: rank 0's stream alone (a single-process run with batch B) differs
    alone = Trainer(*W.make_models(), ring_of_gaussians(), W.config(), d_penalty=W.r1)
    alone.fit()
    assert not torch.allclose(alone.G.net[0].weight, r0["G"]["net.0.weight"], atol=1e-4)


@gloo
def test_two_rank_sweep_returns_the_one_process_results(runs):
    gathered = load(runs / "sweep.pt")
    alone = train_slice(W.SWEEP_JOBS, steps=W.SWEEP_STEPS, batch_size=16, n_eval=200)
    strip = lambda rs: [{k: v for k, v in r.items() if k != "arm"} for r in rs]
    for results in gathered.values():
        assert [(r["arm"], r["seed"]) for r in results] == W.SWEEP_JOBS
    # whole arms per rank: every vmapped batch is the one-process batch, so bit for bit the same
    assert_close(strip(gathered["by_arm"]), strip(alone), rtol=0, atol=0, equal_nan=True)  # NaN: no sample in a mode
    assert len({r["samples"][0, 0].item() for r in alone}) == len(W.SWEEP_JOBS)            # nine different runs
    # an arm split over ranks: the seed trained alone matches to float round-off only
    assert_close(strip(gathered["by_count"]), strip(alone), rtol=1e-5, atol=1e-6, equal_nan=True)


@gloo
def test_killed_two_rank_run_resumes_exactly(runs):
    assert (runs / "found_step.txt").read_text() == str(W.KILL_AT)     # the killed run had left step 4
    state = load_checkpoint(runs / "ckpt" / "checkpoint.pt")
    assert state["step"] == 8 and state["world_size"] == 2 and len(state["rank_rng"]) == 2
    assert not torch.equal(state["rank_rng"][0]["noise"], state["rank_rng"][1]["noise"])
    assert not torch.equal(state["rank_rng"][0]["torch"], state["rank_rng"][1]["torch"])
    assert_close(load(runs / "resumed.pt"), load(runs / "straight.pt"), rtol=0, atol=0)


@gloo
def test_a_corrupt_checkpoint_fails_on_every_rank(runs):
    for rank in range(W.WORLD):
        assert "truncated or corrupt" in (runs / f"bad_rank{rank}.txt").read_text()


# --- single-process pieces (no process group) --------------------------------------------------
def test_rank_streams_rank_zero_is_the_single_process_stream():
    assert D.stream_seed(5, 0) == 5
    seeds = {D.stream_seed(s, r) for s in range(20) for r in range(1, 9)}
    assert len(seeds) == 160 and not seeds & set(range(1000)) and max(seeds) < 2**63
    with pytest.raises(ValueError, match="rank"):
        D.stream_seed(0, -1)


def test_split_jobs_balanced_and_keeps_groups_whole():
    jobs = list(range(7))
    assert D.split_jobs(jobs, 3) == [[0, 1, 2], [3, 4], [5, 6]]
    assert D.split_jobs(jobs[:1], 3) == [[0], [], []]
    arms = [(arm, seed) for arm in "abc" for seed in range(3)]
    assert D.split_jobs(arms, 2, group=lambda job: job[0]) == [arms[:6], arms[6:]]
    assert D.split_jobs(arms, 4, group=lambda job: job[0]) == [arms[:3], arms[3:6], arms[6:], []]
    interleaved = [("a", 0), ("b", 0), ("a", 1)]
    assert D.split_jobs(interleaved, 2, group=lambda job: job[0]) == [[("a", 0), ("a", 1)], [("b", 0)]]


def test_sweep_in_one_process_is_run_slice():
    jobs = [("a", 0), ("a", 1), ("b", 0)]
    assert D.sweep(jobs, lambda mine: [f"{a}{s}" for a, s in mine]) == ["a0", "a1", "b0"]
    with pytest.raises(ValueError, match="one result per job"):
        D.sweep(jobs, lambda mine: mine[:1])


def test_resume_with_another_number_of_processes_is_refused(tmp_path):
    tr = Trainer(*W.make_models(), ring_of_gaussians(), W.config(checkpoint_dir=str(tmp_path)))
    tr.fit(steps=1)
    path = tmp_path / "checkpoint.pt"
    state = load_checkpoint(path)
    assert state["world_size"] == 1
    save_checkpoint(path, {**{k: v for k, v in state.items() if k not in ("format", "checksum")}, "world_size": 2})
    with pytest.raises(CheckpointError, match="same number of processes"):
        Trainer(*W.make_models(), ring_of_gaussians(), W.config(checkpoint_dir=str(tmp_path))).fit()


def test_sync_batchnorm_on_cpu_is_refused():
    with pytest.raises(ValueError, match="SyncBatchNorm has no CPU kernel"):
        D.DistContext(rank=0, world_size=2).wrap(torch.nn.BatchNorm1d(3), torch.device("cpu"), sync_batchnorm=True)


def test_schemes_without_data_parallel_support_are_refused(monkeypatch):
    monkeypatch.setattr(D.DistContext, "detect", classmethod(lambda cls: cls(rank=0, world_size=2)))
    with pytest.raises(NotImplementedError, match="UnrolledTrainer does not support data-parallel"):
        UnrolledTrainer(*W.make_models(), ring_of_gaussians(), W.config(), unroll_steps=1)


def test_command_line_trains_resumes_and_sweeps_in_one_process(tmp_path, capsys):
    from ganlib.train import main

    run = ["--experiment", "ring", "--batch-size", "16", "--log-every", "2", "--checkpoint-dir", str(tmp_path)]
    assert main(run + ["--steps", "2"]) == 0
    assert main(run + ["--steps", "4"]) == 0                      # resumes at step 2
    assert load_checkpoint(tmp_path / "checkpoint.pt")["history"]["step"] == [1, 2, 3, 4]
    out = tmp_path / "sweep.pt"
    assert main(["--sweep", "--arms", "ns,hinge", "--seeds", "0,3", "--steps", "2", "--out", str(out)]) == 0
    assert [(r["arm"], r["seed"]) for r in load(out)] == [("ns", 0), ("ns", 3), ("hinge", 0), ("hinge", 3)]
    with pytest.raises(SystemExit):
        main(["--experiment", "nope"])
