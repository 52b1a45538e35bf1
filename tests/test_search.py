"""The weight-sharing supernet and the TuNAS controller."""

import contextlib
import json

import numpy as np
import pytest
import torch

from edgenas.search import Controller, Supernet, recalibrate_bn, reward
from edgenas.search.controller import Reinforce, Trial
from edgenas.space import get_space
from edgenas.spec import SpecError, count


@pytest.fixture(scope="module")
def supernet():
    torch.manual_seed(0)
    return Supernet(get_space("small-28"))


@contextlib.contextmanager
def random_classifier(supernet, gen: torch.Generator):
    """The supernet's classifier starts at zero, which makes every logit zero whatever the features: give it
    random weights for a comparison to see the features at all, and put the zeros back after."""
    zero = supernet.classifier.weight.detach().clone()
    try:
        with torch.no_grad():
            supernet.classifier.weight.normal_(0, supernet.classifier.in_features ** -0.5, generator=gen)
        yield
    finally:
        with torch.no_grad():
            supernet.classifier.weight.copy_(zero)


def _decisions(space, n, seed=0):
    rng = np.random.default_rng(seed)
    out = [space.sample(rng) for _ in range(n)]
    kinds = {str(v) for d in out for v in d.values()}
    assert {"ibn", "fused_ibn", "gc_ibn", "skip"} <= kinds  # every block type is exercised
    return out


@pytest.mark.parametrize("separate", [(), ("expand_ratio", "kernel_size")])
def test_extracted_model_computes_what_the_supernet_computes(supernet, separate):
    if separate:
        torch.manual_seed(0)
        supernet = Supernet(supernet.space, separate)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(8, 1, 28, 28, generator=gen)
    with random_classifier(supernet, gen):
        for decision in _decisions(supernet.space, 12 if not separate else 4):
            model = supernet.extract(decision).train()  # batch statistics, as the supernet uses them
            for m in model.modules():
                if isinstance(m, torch.nn.Dropout):
                    m.p = 0.0
            with torch.no_grad():
                ours, theirs = model(x), supernet(x, decision)
            assert ours.abs().max() > 0.1  # the logits carry the features
            # float32: the same convs, but sliced and gathered weights sum in another order
            assert torch.allclose(ours, theirs, atol=1e-5, rtol=1e-4)


def test_weights_are_shared_across_choices(supernet):
    """Kernel 3 is the centre of the kernel-5 weight; a GC conv is the block-diagonal part of the full one."""
    slot = supernet.stages[2][1]["gc_ibn"].expand
    full = slot.kernel(64, 256, 5, 1)
    grouped = slot.kernel(64, 256, 3, 4)  # 4 groups: 16 inputs -> 64 outputs each
    assert grouped.shape == (256, 16, 3, 3)
    assert torch.equal(grouped[64:128], full[64:128, 16:32, 1:4, 1:4])
    assert torch.equal(slot.kernel(64, 96, 3), full[:96, :, 1:4, 1:4])


def test_separate_weight_sets_per_option():
    """``separate=("expand_ratio",)``: expansion 4 and 8 train different weights; kernels still share."""
    net = Supernet(get_space("small-28"), ("expand_ratio",))
    ops = net.stages[2][1]
    assert sorted(ops) == ["fused_ibn_e4", "fused_ibn_e8", "gc_ibn_e4", "gc_ibn_e8", "ibn_e4", "ibn_e8"]
    assert ops["ibn_e4"].expand.weight.shape[0] == 4 * 96 and ops["ibn_e8"].expand.weight.shape[0] == 8 * 96
    assert ops["ibn_e4"].spatial.weight.shape[-1] == 5  # kernel 3 is still the centre of 5
    space = get_space("small-28")
    decision = space.sample(np.random.default_rng(0))
    block = space.fix(decision).stages[2].blocks[0]
    assert net.key(block) == f"{block.type}_e{block.expand_ratio}"
    with pytest.raises(ValueError, match="unknown field"):
        Supernet(space, ("group_size",))


def test_recalibrated_batchnorm_matches_the_batch(supernet):
    decision = supernet.space.sample(np.random.default_rng(3))
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 1, 28, 28, generator=gen)
    with random_classifier(supernet, gen):
        model = recalibrate_bn(supernet.extract(decision), [x])
        assert not model.training
        # BatchNorm keeps the unbiased variance of the batch (x n / (n - 1), n values per channel) where the
        # supernet normalizes with the biased one: undo exactly that factor, and what is left must agree to
        # float32 rounding, as the extracted model does in training mode above.
        norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        n = {}

        def count_values(m, args):
            n[m] = args[0].numel() // args[0].shape[1]

        hooks = [m.register_forward_pre_hook(count_values) for m in norms]
        with torch.no_grad():
            model(x)
        for h in hooks:
            h.remove()
        for m in norms:
            m.running_var.mul_((n[m] - 1) / n[m])
        with torch.no_grad():
            assert torch.allclose(model(x), supernet(x, decision), atol=1e-5, rtol=1e-4)


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
    active = space.active_paths(decision, paths)
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
            samples.append(Trial(d, 0.5, macs(d), reward(0.5, macs(d), target), tuple(idx)))
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

    keep = ["search.keep_supernet=true"]  # so the finished checkpoints can be compared weight by weight
    cfg = lambda out, more=(): load_config(overrides=SEARCH + [f"out={out}", *more], base={"search": {}})  # noqa: E731
    whole = search(cfg(tmp_path / "a", keep), resume=False, progress=False)
    assert search(cfg(tmp_path / "b"), resume=False, stop_after=6, progress=False) == {"stopped_at": 6}
    assert main(["search", "--out", str(tmp_path / "b"), "--resume", "--json"] + [
        a for s in SEARCH + keep for a in ("--set", s)]) == 0
    resumed = json.loads(capsys.readouterr().out)
    assert resumed["decision"] == whole["decision"] and resumed["probabilities"] == whole["probabilities"]
    a, b = (torch.load(tmp_path / d / "search_checkpoint.pt", weights_only=True) for d in "ab")
    assert all(torch.equal(a["supernet"][k], b["supernet"][k]) for k in a["supernet"])
    # by default a finished search keeps only the controller and its record: rerunning the job shrinks the
    # checkpoint, and a rerun after that answers from result.json without the supernet
    full = (tmp_path / "a" / "search_checkpoint.pt").stat().st_size
    again = search(cfg(tmp_path / "a"), resume=True, progress=False)
    small = torch.load(tmp_path / "a" / "search_checkpoint.pt", weights_only=True)
    assert "supernet" not in small and "optimizer" not in small
    assert again["checkpoint_bytes"] == {"during_search": full,
                                         "kept": (tmp_path / "a" / "search_checkpoint.pt").stat().st_size}
    assert again["checkpoint_bytes"]["kept"] < full / 10
    assert again["decision"] == whole["decision"]
    assert search(cfg(tmp_path / "a"), resume=True, progress=False)["decision"] == whole["decision"]
    trace = [json.loads(line) for line in (tmp_path / "a" / "trace.jsonl").read_text().splitlines()]
    assert len(trace) == 12 and "reward" in trace[-1] and "reward" not in trace[0]  # warm-up: controller frozen
    arch = load_arch(tmp_path / "a" / "arch.yaml")
    assert get_space("small-28").contains(arch)
    assert whole["predicted_latency"] == pytest.approx(count(arch).macs / 1e6)
    assert whole["latency_model"] == "macs" and whole["config"]["search"]["latency_target"] == 60
    # the chosen arch is also scored with its own recalibrated BatchNorm statistics, the report's quality axis
    assert 0.0 <= whole["supernet_quality_recalibrated"] <= 1.0 and whole["strategy"] == "tunas"
    # the search's cost per phase; the resumed search adds its two runs' times
    phases = {"weight_step_warmup", "weight_step", "controller_step", "record", "checkpoint", "result"}
    assert set(whole["phase_seconds"]) == phases and all(v > 0 for v in whole["phase_seconds"].values())
    assert set(resumed["phase_seconds"]) == phases
    # a finished search is neither overwritten nor resumed under another config
    changed = load_config(overrides=SEARCH + [f"out={tmp_path / 'a'}", "search.rl_lr=0.1"], base={"search": {}})
    with pytest.raises(SpecError, match=r"search_checkpoint.pt: was searched with another config \(search.rl_lr "
                                        r"0.2 -> 0.1\)"):
        search(changed, resume=True, progress=False)
    with pytest.raises(SpecError, match="already holds a search"):
        search(cfg(tmp_path / "a"), resume=False, progress=False)
    assert search(cfg(tmp_path / "a"), resume=True, progress=False)["decision"] == whole["decision"]


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


MULTI = ["search.trials=5", "search.trial_steps=3", "search.population=2", "search.heldout=100",
         "data.train_subset=400", "train.batch_size=16", "train.threads=1", "train.lr=0.05",
         "search.latency_target=60"]


@pytest.mark.parametrize("kind", ["random", "evolution"])
def test_baselines_stop_starting_trials_when_the_budget_is_spent(kind, monkeypatch):
    from edgenas.search import baselines

    now = [0.0]  # a fake clock on which every trial takes one second
    monkeypatch.setattr(baselines.time, "perf_counter", lambda: now[0])

    def evaluate(decision):
        now[0] += 1
        return 0.5, 60.0

    space = get_space("small-28")
    trials = baselines.run_baseline(kind, space, evaluate, trials=50, target=60.0, population=2, seed=0,
                                    budget_seconds=5)
    assert len(trials) == 5 and now[0] == 5
    assert len(baselines.run_baseline(kind, space, evaluate, trials=3, target=60.0, population=2, seed=0,
                                      budget_seconds=100)) == 3


def test_strategy_evolution_is_a_search_command_that_resumes_trial_by_trial(tmp_path, capsys, monkeypatch):
    """``edgenas search --strategy evolution`` writes the TuNAS folder (result, arch, trace per trial,
    report); interrupted after two trials, a resumed run trains only the other three and ends as an
    uninterrupted one."""
    from edgenas.cli import main
    from edgenas.search import multitrial
    from edgenas.spec import load_arch

    args = lambda out: ["search", "--strategy", "evolution", "--out", str(out), "--json"] + [  # noqa: E731
        a for s in MULTI for a in ("--set", s)]
    assert main(args(tmp_path / "a")) == 0
    whole = json.loads(capsys.readouterr().out)
    assert whole["strategy"] == "evolution" and whole["trials"] == 5 and "supernet_quality" not in whole
    trace = [json.loads(line) for line in (tmp_path / "a" / "trace.jsonl").read_text().splitlines()]
    assert [r["trial"] for r in trace] == list(range(5))
    assert max(r["reward"] for r in trace) == trace[-1]["best_reward"]
    assert whole["quality"] == pytest.approx(max(trace, key=lambda r: r["reward"])["quality"], abs=1e-4)
    assert load_arch(tmp_path / "a" / "arch.yaml") == get_space("small-28").fix(whole["decision"]).replace(
        name="small-28-searched")
    page = (tmp_path / "a" / "report.html").read_text()
    assert "held-out top-1 after 3 steps of stand-alone training" in page and "5 of 5" in page
    assert "fig-pareto" in page and "fig-probabilities" not in page

    real, calls, interrupt_at = multitrial.make_evaluator, [], [3]

    def interrupted(*a, **k):  # the third trial is interrupted, as a kill would
        evaluate = real(*a, **k)

        def run(decision):
            calls.append(decision)
            if len(calls) == interrupt_at[0]:
                raise KeyboardInterrupt
            return evaluate(decision)
        return run
    monkeypatch.setattr(multitrial, "make_evaluator", interrupted)
    assert main(args(tmp_path / "b")) == 130  # the CLI's exit code for an interruption
    assert len((tmp_path / "b" / "trials.jsonl").read_text().splitlines()) == 1 + 2  # settings + 2 trials
    assert main(args(tmp_path / "b")) == 1 and "already holds a search" in capsys.readouterr().err
    calls.clear()
    interrupt_at[0] = 0
    capsys.readouterr()
    assert main(args(tmp_path / "b") + ["--resume"]) == 0
    resumed = json.loads(capsys.readouterr().out)
    assert len(calls) == 3 and resumed["decision"] == whole["decision"]
    assert resumed["quality"] == whole["quality"]
    assert main(args(tmp_path / "b") + ["--resume", "--set", "search.trial_steps=4"]) == 1
    assert "was searched with another config (search.trial_steps 3 -> 4)" in capsys.readouterr().err


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


def test_warmup_enables_all_ops_and_widest_filters_then_fades():
    from edgenas.search.tunas import rl_lr, warmup_paths

    space = get_space("small-28")
    net = Supernet(space)
    decision = space.sample(np.random.default_rng(0))
    g = torch.Generator().manual_seed(0)
    wide, parallel = warmup_paths(space, decision, 1.0, g)
    positions = [p for p, _ in space.choices() if p.endswith("]") and ".blocks[" in p]
    assert len(parallel) == len(positions)  # every searchable position runs all its ops
    assert {b.type for specs in parallel.values() for b in specs} == {"ibn", "fused_ibn", "gc_ibn", "skip"}
    assert all(wide[p] == max(c.options) for p, c in space.choices() if p.endswith("out_channels"))
    x = torch.randn(4, 1, 28, 28)
    net(x, wide, parallel).sum().backward()
    used = {k for k, op in net.stages[2][1].items() if op.project.weight.grad is not None}
    assert used == {"ibn", "fused_ibn", "gc_ibn"}  # all ops of a position train at once
    assert warmup_paths(space, decision, 0.0, g) == (decision, {})
    # one op per position given as "parallel" is the plain forward
    arch = space.fix(decision)
    from edgenas.spec import block_plan

    single = {(pb.stage, pb.index): [pb.block] for pb in block_plan(arch)}
    with torch.no_grad():
        assert torch.allclose(net(x, decision, single), net(x, decision), atol=1e-6)
    assert rl_lr(9, 10, 40, 0.05, 10.0) == 0.0 and rl_lr(10, 10, 40, 0.05, 10.0) == 0.05
    assert rl_lr(39, 10, 40, 0.05, 10.0) == pytest.approx(0.5)


def test_proxy_task_shares_decisions_with_the_deployment_space():
    from edgenas.config import load_config
    from edgenas.search.proxy import proxy_note, task_space

    space = get_space("edgetpu-v2-224")
    cfg = load_config(overrides=["search.input_size=32"], base={"search": {"space": "edgetpu-v2-224"}})
    task = task_space(cfg, space)
    decision = space.sample(np.random.default_rng(1))
    a, b = space.fix(decision), task.fix(decision)
    assert (b.input_size, b.in_channels, b.head.num_classes) == (32, 1, 10)
    assert (a.input_size, a.in_channels, a.head.num_classes) == (224, 3, 1001)
    assert a.stages == b.stages and "proxy task" in proxy_note(space, task, cfg)
    small = get_space("small-28")
    assert task_space(load_config(base={"search": {}}), small) is small  # Fashion-MNIST already


def test_covering_decisions_contain_every_layer_of_the_space():
    from edgenas.spec import arch_layers

    space = get_space("small-28")
    key = lambda x: (x.op, x.in_channels, x.out_channels, x.in_size, x.kernel_size, x.stride, x.groups)  # noqa: E731
    covered = {key(x) for d in space.covering() for x in arch_layers(space.fix(d))}
    rng = np.random.default_rng(5)
    for _ in range(40):
        assert {key(x) for x in arch_layers(space.sample_arch(rng))} <= covered


def test_bundled_cycles_are_the_simulators_and_cover_the_spaces():
    from edgenas.latency.edgetpu import EdgeTPUModel
    from edgenas.latency.scalesim_cycles import CycleCache
    from edgenas.models import get_arch, list_models

    arch = get_space("small-28").sample_arch(np.random.default_rng(2))
    simulated = EdgeTPUModel(cache=CycleCache(use_bundled=False))
    bundled = EdgeTPUModel()
    assert bundled.predict(arch).total == simulated.predict(arch).total and simulated.cache.simulated > 0
    rng = np.random.default_rng(3)
    for a in [get_space("edgetpu-v2-224").sample_arch(rng) for _ in range(10)] + [get_arch(m) for m in list_models(task="classification")]:
        bundled.predict(a)
    assert bundled.cache.simulated == 0  # nothing had to be simulated


SIGKILL_SEARCH = SEARCH + ["search.checkpoint_every=1", "search.steps=16"]


def test_search_killed_at_a_random_step_resumes_to_the_same_architecture(tmp_path):
    """SIGKILL (no clean-up) after a checkpoint, twice: once in the warm-up (steps 0-3 of 16: controller frozen,
    ops summed) and, resumed, again after the controller has taken steps (so the controller, its optimizer
    and every random stream must come back from the checkpoint); --resume must then end where an
    uninterrupted run with the same seed ends. The steps are fixed so that a failure reproduces."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from edgenas.cli import main
    from edgenas.config import load_config
    from edgenas.search import search

    args = [a for s in SIGKILL_SEARCH for a in ("--set", s)]
    ckpt = tmp_path / "b" / "search_checkpoint.pt"

    def kill_after(step: int, *more: str) -> int:
        """Run the search in a process, SIGKILL it once its checkpoint holds ``step`` steps; the steps held."""
        proc = subprocess.Popen([sys.executable, "-m", "edgenas", "search", "--out", str(tmp_path / "b"), *args,
                                 *more], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while proc.poll() is None:
            if ckpt.is_file() and torch.load(ckpt, weights_only=True)["step"] >= step:
                os.kill(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.05)
        assert proc.wait() == -signal.SIGKILL, f"the search ended before step {step}"
        assert not (tmp_path / "b" / "result.json").exists()
        return torch.load(ckpt, weights_only=True)["step"]

    held = [kill_after(2), kill_after(10, "--resume")]
    assert held[0] < 4 <= held[1] < 16, f"killed after steps {held}: not in the warm-up, then after it"
    cfg = load_config(overrides=SIGKILL_SEARCH + [f"out={tmp_path / 'a'}"], base={"search": {}})
    whole = search(cfg, resume=False, progress=False)
    assert main(["search", "--out", str(tmp_path / "b"), "--resume", *args]) == 0
    resumed = json.loads((tmp_path / "b" / "result.json").read_text())
    assert resumed["decision"] == json.loads(json.dumps(whole["decision"], default=str)), f"killed after {held}"
    assert resumed["probabilities"] == whole["probabilities"], f"killed after steps {held}"


def test_two_process_search_samples_per_rank_and_keeps_one_controller(tmp_path):
    """Under torchrun each process samples its own architectures; all rewards feed one REINFORCE step, so
    both processes end with the same controller."""
    import os
    import subprocess
    import sys

    script = tmp_path / "run.py"
    script.write_text(
        "import json, sys\nimport torch.distributed as dist\nfrom edgenas.config import load_config\n"
        "from edgenas.search import search\n"
        f"cfg = load_config(overrides={SEARCH!r} + ['out={tmp_path}'], base={{'search': {{}}}})\n"
        "r = search(cfg, resume=False, progress=False)\n"
        f"open('{tmp_path}/rank%d.json' % dist.get_rank(), 'w').write(json.dumps("
        "{'decision': r['decision'], 'probabilities': r['probabilities']}, default=str))\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_port", "29541", str(script)], capture_output=True, text=True, env=env,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0 == r1
    assert r0["probabilities"] != json.loads(json.dumps(Controller(get_space("small-28")).probabilities()))
    trace = [json.loads(line) for line in (tmp_path / "trace.jsonl").read_text().splitlines()]
    rl_steps = [r for r in trace if "samples" in r]
    assert rl_steps and all(len(r["samples"]) == 2 for r in rl_steps)  # one sample from each process
    assert any(r["samples"][0] != r["samples"][1] for r in rl_steps)  # ... of different architectures
    assert torch.load(tmp_path / "search_checkpoint.pt", weights_only=True)["world"] == 2


# Ray starts its processes with subprocess (fork then exec at once); JAX, imported earlier in this process by
# the LiteRT exporter's tests, warns on any fork although an immediate exec cannot deadlock.
@pytest.mark.filterwarnings("ignore:os.fork\\(\\) was called:RuntimeWarning")
def test_baselines_run_on_a_local_ray_cluster():
    from edgenas.config import load_config
    from edgenas.latency import get_latency_model
    from edgenas.search.baselines import make_evaluator, ray_executor, run_baseline

    import ray

    space = get_space("small-28")
    cfg = load_config(overrides=["data.train_subset=300", "search.heldout=100", "train.batch_size=16",
                                 "train.threads=1"], base={"search": {}})
    evaluate = make_evaluator(cfg, space, get_latency_model("macs"), steps=2)
    try:
        executor = ray_executor(num_cpus=2)
        on_ray = run_baseline("random", space, evaluate, trials=3, target=60.0, seed=4, executor=executor)
        ray_threads = executor(lambda _: torch.get_num_threads(), [0])
    finally:
        ray.shutdown()
    # Ray runs a one-CPU task with OMP_NUM_THREADS=1; with the same thread count here the convs sum in the same
    # order, so a trial trains to the same weights and scores exactly the same.
    assert ray_threads == [1]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        local = run_baseline("random", space, evaluate, trials=3, target=60.0, seed=4)
    finally:
        torch.set_num_threads(threads)
    assert [t.decision for t in on_ray] == [t.decision for t in local]
    assert [t.latency for t in on_ray] == [t.latency for t in local]
    assert [t.quality for t in on_ray] == [t.quality for t in local]
    assert [t.reward for t in on_ray] == [t.reward for t in local]


@pytest.mark.parametrize("argv,expected", [
    (["--strategy", "random"], ("random", "local", None)),
    (["--strategy", "evolution", "--ray"], ("evolution", "ray", None)),
    (["--strategy", "random", "--ray", "10.0.0.1:6379", "--set", "search.strategy=evolution"],
     ("evolution", "ray", "10.0.0.1:6379")),  # --set wins over the flags
])
def test_strategy_and_ray_flags_are_config_overrides(argv, expected):
    from edgenas.cli import _parser
    from edgenas.cli.search import _flags
    from edgenas.cli.train import run_config

    args = _parser().parse_args(["search", *argv])
    s = run_config(args, {"search": {}}, _flags(args)).search
    assert (s.strategy, s.executor, s.ray_address) == expected


def test_zoo_points_are_scored_with_their_own_batchnorm_statistics(tmp_path):
    """On edgetpu-v2-224 (a proxy at 32 px) the MobileNetEdgeTPUV2 models are points of the space: each is
    scored twice, with the held-out batch's statistics and with its own recalibrated ones, kept in result.json
    (the report leaves them off its quality axis: test_report)."""
    from edgenas.config import load_config
    from edgenas.search import search

    cfg = load_config(overrides=["search.input_size=32", "search.steps=2", "search.heldout=64", "search.rl_batch=32",
                                 "data.train_subset=256", "train.batch_size=16", "train.threads=1",
                                 "search.target=edgetpu", "search.latency_target=1.2", f"out={tmp_path}"],
                      base={"search": {"space": "edgetpu-v2-224"}})
    zoo = search(cfg, resume=False, progress=False)["zoo"]
    scored = [z for z in zoo if "supernet_quality" in z]
    assert {z["name"] for z in scored} >= {"mobilenet_edgetpu_v2_s", "mobilenet_edgetpu_v2_m"}
    assert all(0.0 <= z["supernet_quality_recalibrated"] <= 1.0 for z in scored)
