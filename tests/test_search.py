"""The weight-sharing supernet and the TuNAS controller."""

import json

import numpy as np
import pytest
import torch

from edgenas.search import Controller, Supernet, recalibrate_bn, reward
from edgenas.search.controller import Reinforce, active_paths
from edgenas.space import get_space
from edgenas.spec import count


@pytest.fixture(scope="module")
def supernet():
    torch.manual_seed(0)
    return Supernet(get_space("small-28"))


def _decisions(space, n, seed=0):
    rng = np.random.default_rng(seed)
    out = [space.sample(rng) for _ in range(n)]
    kinds = {str(v) for d in out for v in d.values()}
    assert {"ibn", "fused_ibn", "gc_ibn", "skip"} <= kinds  # every block type is exercised
    return out


def test_extracted_model_computes_what_the_supernet_computes(supernet):
    x = torch.randn(8, 1, 28, 28)
    for decision in _decisions(supernet.space, 12):
        model = supernet.extract(decision).train()  # batch statistics, as the supernet uses them
        for m in model.modules():
            if isinstance(m, torch.nn.Dropout):
                m.p = 0.0
        with torch.no_grad():
            assert torch.allclose(model(x), supernet(x, decision), atol=1e-5, rtol=1e-4)


def test_weights_are_shared_across_choices(supernet):
    """Kernel 3 is the centre of the kernel-5 weight; a GC conv is the block-diagonal part of the full one."""
    slot = supernet.stages[2][1]["gc_ibn"].expand
    full = slot.kernel(64, 256, 5, 1)
    grouped = slot.kernel(64, 256, 3, 4)  # 4 groups: 16 inputs -> 64 outputs each
    assert grouped.shape == (256, 16, 3, 3)
    assert torch.equal(grouped[64:128], full[64:128, 16:32, 1:4, 1:4])
    assert torch.equal(slot.kernel(64, 96, 3), full[:96, :, 1:4, 1:4])


def test_recalibrated_batchnorm_matches_the_batch(supernet):
    decision = supernet.space.sample(np.random.default_rng(3))
    x = torch.randn(64, 1, 28, 28)
    model = recalibrate_bn(supernet.extract(decision), [x])
    assert not model.training
    with torch.no_grad():
        assert torch.allclose(model(x), supernet(x, decision), atol=0.05, rtol=0.05)  # unbiased vs biased var


def test_rewards():
    assert reward(0.8, 1.0, 1.0) == 0.8
    assert reward(0.8, 1.2, 1.0) == pytest.approx(0.8 - 0.02)
    assert reward(0.8, 0.8, 1.0) == pytest.approx(0.8 - 0.02)  # symmetric around the target
    assert reward(0.8, 2.0, 1.0, "mnas", -0.07) == pytest.approx(0.8 * 2 ** -0.07)
    assert reward(0.8, 0.5, 1.0, "mnas-hard", -0.07) == 0.8
    with pytest.raises(ValueError, match="unknown reward 'x'"):
        reward(0.8, 1.0, 1.0, "x")


def test_nested_choices_count_only_under_their_option():
    space = get_space("small-28")
    paths = [p for p, _ in space.choices()]
    decision = {p: c.labels[0] if hasattr(c.options[0], "type") else c.options[0] for p, c in space.choices()}
    decision["stages[1].blocks[0]"] = "ibn"
    active = active_paths(decision, paths)
    assert "stages[1].blocks[0]@ibn.kernel_size" in active
    assert "stages[1].blocks[0]@gc_ibn.group_size" not in active


def test_reinforce_learns_to_hit_a_latency_target():
    """With quality fixed, the abs reward alone must steer the controller to architectures whose cost (here
    MACs) is near the target."""
    space = get_space("small-28")
    controller = Controller(space)
    rl = Reinforce(controller, lr=0.1)
    g = torch.Generator().manual_seed(0)
    from edgenas.spec import count

    macs = lambda d: count(space.fix(d)).macs  # noqa: E731
    target = 60e6  # the space spans ~25-375 M MACs, median ~125 M
    first = [macs(controller.sample(g)[0]) for _ in range(20)]
    for _ in range(300):
        samples = []
        for _ in range(4):
            d, idx = controller.sample(g)
            samples.append((d, idx, reward(0.5, macs(d), target)))
        rl.step(samples)
    last = [macs(controller.sample(g)[0]) for _ in range(20)]
    err = lambda xs: float(np.median([abs(m / target - 1) for m in xs]))  # noqa: E731
    assert err(last) < 0.15 < err(first), (err(first), err(last))
    assert controller.entropy() < Controller(space).entropy()
    space.fix(controller.most_likely())  # valid


SEARCH = ["search.steps=12", "search.heldout=500", "data.train_subset=1500", "train.batch_size=32",
          "search.rl_batch=64", "search.checkpoint_every=4", "train.threads=1", "train.lr=0.02",
          "search.latency_target=60", "search.rl_lr=0.2"]


def test_search_writes_its_result_and_resumes_to_the_same_answer(tmp_path, capsys):
    from edgenas.cli import main
    from edgenas.config import load_config
    from edgenas.search import search
    from edgenas.spec import load_arch

    cfg = lambda out: load_config(overrides=SEARCH + [f"out={out}"], base={"search": {}})  # noqa: E731
    whole = search(cfg(tmp_path / "a"), resume=False, progress=False)
    assert search(cfg(tmp_path / "b"), resume=False, stop_after=6, progress=False) == {"stopped_at": 6}
    assert main(["search", "--out", str(tmp_path / "b"), "--resume", "--json"] + [
        a for s in SEARCH for a in ("--set", s)]) == 0
    resumed = json.loads(capsys.readouterr().out)
    assert resumed["decision"] == whole["decision"] and resumed["probabilities"] == whole["probabilities"]
    a, b = (torch.load(tmp_path / d / "search_checkpoint.pt", weights_only=True) for d in "ab")
    assert all(torch.equal(a["supernet"][k], b["supernet"][k]) for k in a["supernet"])
    trace = [json.loads(line) for line in (tmp_path / "a" / "trace.jsonl").read_text().splitlines()]
    assert len(trace) == 12 and "reward" in trace[-1] and "reward" not in trace[0]  # warm-up: controller frozen
    arch = load_arch(tmp_path / "a" / "arch.yaml")
    assert get_space("small-28").contains(arch)
    assert whole["predicted_latency"] == pytest.approx(count(arch).macs / 1e6)
    assert whole["latency_model"] == "macs" and whole["config"]["search"]["latency_target"] == 60


def test_space_show_prints_the_latency_range_to_pick_a_target_from(capsys):
    from edgenas.cli import main

    assert main(["space", "show", "small-28", "--target", "macs", "--target-samples", "8", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)["latency_range_sampled"]
    assert r["unit"] == "MMACs" and 20 < r["min"] <= r["median"] <= r["max"] < 400 and r["samples"] == 8


@pytest.mark.parametrize("kind", ["random", "evolution"])
def test_baselines_score_trials_with_the_same_reward(kind):
    from edgenas.config import load_config
    from edgenas.latency import get_latency_model
    from edgenas.search.baselines import best, make_evaluator, run_baseline

    space = get_space("small-28")
    cfg = load_config(overrides=["data.train_subset=400", "search.heldout=100", "train.batch_size=16",
                                 "train.lr=0.05", "train.threads=1"], base={"search": {}})
    evaluate = make_evaluator(cfg, space, get_latency_model("macs"), steps=3)
    trials = run_baseline(kind, space, evaluate, trials=4, target=60.0, population=2, seed=1)
    assert len(trials) == 4 and len({json.dumps(t.decision, sort_keys=True, default=str) for t in trials}) == 4
    for t in trials:
        assert 0.0 <= t.quality <= 1.0 and t.latency == pytest.approx(count(space.fix(t.decision)).macs / 1e6)
        assert t.reward == pytest.approx(t.quality - 0.1 * abs(t.latency / 60.0 - 1))
    assert best(trials).reward == max(t.reward for t in trials)


def test_evolution_mutates_one_choice():
    from edgenas.search.baselines import mutate

    space = get_space("small-28")
    rng = np.random.default_rng(0)
    parent = space.sample(rng)
    for _ in range(10):
        child = mutate(space, parent, rng)
        changed = [p for p in parent if str(parent[p]) != str(child[p])]
        assert len(changed) == 1
        space.fix(child)
