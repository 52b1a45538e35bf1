"""The segmentation and detection spaces (autoseg-512, spaghetti-320) and the sliced supernet over them: the
zoo as points, repairable sampling, and a supernet whose extracted networks compute what it computes."""

import functools

import numpy as np
import pytest
import torch

from edgenas.models import get_arch, list_models
from edgenas.search.controller import Controller
from edgenas.search.sliced import SlicedSupernet, block_diagonal, region
from edgenas.space import get_space
from edgenas.spec import SpecError, count

ZOO = {"autoseg-512": ["autoseg_edgetpu_xs", "autoseg_edgetpu_s", "autoseg_edgetpu_m"],
       "spaghetti-320": ["spaghettinet_edgetpu_s", "spaghettinet_edgetpu_m", "spaghettinet_edgetpu_l"]}
TASK = {"autoseg-512": "segmentation", "spaghetti-320": "detection"}


@pytest.mark.parametrize("name,model", [(s, m) for s, ms in ZOO.items() for m in ms])
def test_the_zoo_models_are_points(name, model):
    space, spec = get_space(name), get_arch(model)
    decision = space.match(spec)
    assert decision is not None
    fixed = space.fix(decision)
    a, b = count(fixed), count(spec)
    assert (a.params, a.macs) == (b.params, b.macs)
    assert fixed.input_size == spec.input_size and fixed.num_classes == spec.num_classes


@pytest.mark.parametrize("name", ZOO)
def test_other_models_of_the_task_are_not_points(name):
    space = get_space(name)
    others = [m for m in list_models(task=TASK[name]) if m not in ZOO[name]]
    assert others and all(space.match(get_arch(m)) is None for m in others)
    assert space.match(get_arch("mobilenet_edgetpu_v2_s")) is None  # a classifier is no point of either


def test_autoseg_points_differ_from_the_zoo_where_the_decision_does():
    space = get_space("autoseg-512")
    decision = space.match(get_arch("autoseg_edgetpu_xs"))
    net = space.fix({**decision, "nodes.cells": 2, "nodes.min_level": 4})
    assert sum(n.name.startswith("cell") for n in net.nodes) == 2 * 8  # P4-P8: 4 top-down and 4 bottom-up nodes per cell
    assert {n.level for n in net.nodes if n.name.startswith("cell")} == {4, 5, 6, 7, 8}
    # a skipped position keeps the width before it, whatever its width choice says
    skipped = next(p for p in space.block_paths() if decision[p] == "skip")
    stage = int(skipped.split("stages[")[1].split("]")[0])
    before = net.backbone.stages[stage - 1].out_channels
    assert net.backbone.stages[stage].out_channels == before


def test_spaghetti_depth_inputs_and_residuals():
    space = get_space("spaghetti-320")
    decision = space.match(get_arch("spaghettinet_edgetpu_s"))
    det = space.fix({**decision, "nodes[6].ops[1]": "none", "nodes[6].inputs": "n3+n4+n5"})
    node = det.nodes[6]
    assert node.name == "c0n0" and len(node.ops) == 1 and node.inputs == ("n3", "n4", "n5")
    assert [op.residual for op in det.nodes[7].ops] == [False, True, True, True]


@pytest.mark.parametrize("name", ZOO)
def test_sampling_and_the_controller_repair_block_by_block(name):
    space = get_space(name)
    rng = np.random.default_rng(3)
    points = [space.sample(rng) for _ in range(4)]
    assert len({str(sorted(p.items())) for p in points}) == 4
    for p in points:
        space.fix(p)
    controller = Controller(space)
    decision, idx = controller.sample(torch.Generator().manual_seed(0))
    space.fix(decision)
    assert len(idx) == len(space.choices())
    space.fix(controller.most_likely())


def test_errors_name_the_block_position_to_redraw():
    space = get_space("autoseg-512")
    decision = space.match(get_arch("autoseg_edgetpu_m"))
    position = "backbone.stages[3].blocks[0]"
    bad = {**decision, position: "gc_ibn", f"{position}@gc_ibn.kernel_size": 3,
           f"{position}@gc_ibn.expand_ratio": 3, f"{position}@gc_ibn.group_size": 24}
    with pytest.raises(SpecError) as err:  # 24 does not divide 36 x 3 = 108
        space.fix(bad)
    assert space.failing_block(err.value) == position
    space = get_space("spaghetti-320")
    decision = space.match(get_arch("spaghettinet_edgetpu_s"))
    op = "nodes[3].ops[1]"
    bad = {**decision, op: "fused_grouped", f"{op}@fused_grouped.kernel_size": 3,
           f"{op}@fused_grouped.expansion": 4, f"{op}@fused_grouped.groups": 3}
    with pytest.raises(SpecError) as err:  # n3 is 88 wide: no 3 groups
        space.fix(bad)
    assert space.failing_block(err.value) == "nodes[3].ops[1]"


def test_region_and_block_diagonal():
    assert region((8, 6, 5, 5), (4, 6, 3, 3)) == (slice(0, 4), slice(0, 6), slice(1, 4), slice(1, 4))
    assert region((8,), (3,)) == (slice(0, 3),)
    with pytest.raises(ValueError):
        region((4,), (5,))
    dense = torch.arange(4 * 6, dtype=torch.float32).reshape(4, 6, 1, 1)
    w = block_diagonal(dense, 2)  # out 0-1 see in 0-2, out 2-3 see in 3-5
    assert w.shape == (4, 3, 1, 1)
    assert w[:, :, 0, 0].tolist() == [[0, 1, 2], [6, 7, 8], [15, 16, 17], [21, 22, 23]]


@functools.lru_cache(maxsize=None)
def _supernet(name: str) -> SlicedSupernet:
    torch.manual_seed(0)
    return SlicedSupernet(get_space(name), samples=0)


@pytest.fixture(params=list(ZOO))
def supernet(request):
    return _supernet(request.param)


def _flat(out):
    if isinstance(out, dict):
        out = list(out.values())
    return torch.cat([t.flatten() for t in out]) if isinstance(out, (tuple, list)) else out.flatten()


def test_extracted_networks_compute_what_the_supernet_computes(supernet):
    space = supernet.space
    rng = np.random.default_rng(11)
    decisions = [space.match(get_arch(ZOO[space.name][0]))] + [space.sample(rng) for _ in range(2)]
    x = torch.randn(2, 3, 64, 64)
    for d in decisions:
        supernet.train()
        y = supernet(x, d)
        model = supernet.extract(d).train()
        assert torch.equal(_flat(y), _flat(model(x)))


def test_grouped_convs_share_one_full_kernel():
    net = _supernet("spaghetti-320")
    space = net.space
    base = space.match(get_arch("spaghettinet_edgetpu_s"))  # n0 runs a fused_grouped op with 3 groups
    one = net.extract({**base, "nodes[0].ops[0]@fused_grouped.groups": 1})
    three = net.extract(base)
    dense, grouped = one.nodes["n0"].ops[0].body[0].conv.weight, three.nodes["n0"].ops[0].body[0].conv.weight
    assert grouped.shape[1] * 3 == dense.shape[1]
    assert torch.equal(grouped, block_diagonal(dense, 3))


def test_the_shared_tensors_fit_every_sampled_point_and_train(supernet):
    space = supernet.space
    rng = np.random.default_rng(5)
    for _ in range(12):
        supernet._plan(space.fix(space.sample(rng)))  # raises where a point needs more than the sizing built
    d = space.sample(rng)
    supernet.zero_grad()
    _flat(supernet(torch.randn(2, 3, 64, 64), d)).square().mean().backward()
    used = sum(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in supernet.shared)
    assert 0 < used < len(supernet.shared)


@pytest.mark.parametrize("name", ZOO)
def test_space_show_lists_the_task_and_its_zoo_points(name, capsys):
    from edgenas.cli import main

    assert main(["space", "show", name, "--samples", "4"]) == 0
    out = capsys.readouterr().out
    assert f"{TASK[name]}, {len(get_space(name).block_paths())} block positions" in out
    assert f"zoo models that are points of it: {', '.join(ZOO[name])}" in out
