"""The search's answer (search.decode): the controller's argmax where it meets the target, else the most likely
architecture the decoding finds within target x (1 +- tolerance); and the same config and seed search the same."""

import json

import numpy as np
import pytest
import torch

from edgenas.search.controller import Controller
from edgenas.search.decode import CLOSEST, CONSTRAINED, MOST_LIKELY, band_distance, decode
from edgenas.space import get_space
from edgenas.spec import count

SPACE = get_space("small-28")


def _macs(decision: dict) -> float:
    return count(SPACE.fix(decision)).macs / 1e6


def _controller(seed: int, scale: float = 1.5) -> Controller:
    """A controller part way through a search: random logits, so its argmax lands anywhere."""
    c = Controller(SPACE)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for lg in c.logits:
            lg.copy_(torch.randn(len(lg), generator=gen) * scale)
    return c


def _log_prob(c: Controller, d: dict) -> float:
    return float(c.log_prob(d, c.indices(d)).detach())


def test_a_controller_on_target_answers_with_its_argmax():
    c = _controller(0)
    argmax = c.most_likely()
    got = decode(c, _macs, _macs(argmax) * 1.03, 0.05)
    assert got.decision == argmax and got.rule == MOST_LIKELY and got.moves == 0 and got.log_prob_gap == 0.0


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("target", [25.0, 40.0, 60.0, 90.0])
def test_an_unsettled_controller_lands_within_the_band(seed, target):
    c = _controller(seed)
    argmax = c.most_likely()
    got = decode(c, _macs, target, 0.05)
    assert abs(_macs(got.decision) / target - 1) <= 0.05 and got.latency == _macs(got.decision)
    assert SPACE.is_valid(got.decision) and got.most_likely_latency == _macs(argmax)
    if band_distance(_macs(argmax), target, 0.05) > 0:
        assert got.rule == CONSTRAINED and got.moves >= 1
        assert got.log_prob_gap == pytest.approx(_log_prob(c, argmax) - _log_prob(c, got.decision), abs=1e-5)


def test_the_answer_is_likelier_than_a_random_point_in_the_band():
    """What the decoding is for: among architectures in the band, it finds one the controller prefers; here,
    one at least as likely as the best of 300 of the controller's own samples that fall in the band."""
    c = _controller(1)
    target = 45.0
    got = decode(c, _macs, target, 0.05)
    gen = torch.Generator().manual_seed(0)
    inside = [d for d, _ in (c.sample(gen) for _ in range(300)) if band_distance(_macs(d), target, 0.05) == 0]
    assert inside and _log_prob(c, got.decision) >= max(_log_prob(c, d) for d in inside)


def test_an_unreachable_target_answers_with_the_closest_and_says_so():
    c = _controller(2)
    got = decode(c, _macs, 0.5, 0.05)  # far below the space's smallest architecture
    assert got.rule == CLOSEST and got.latency < got.most_likely_latency
    assert band_distance(got.latency, 0.5, 0.05) > 0


def test_the_same_config_and_seed_search_the_same(tmp_path):
    """On one machine a search is a pure function of its config and seed: two fresh runs write the same
    trace step by step and choose the same architecture (across machines float rounding differs: docs)."""
    from edgenas.config import load_config
    from edgenas.search import search

    overrides = ["search.steps=10", "search.heldout=300", "data.train_subset=900", "train.batch_size=32",
                 "search.rl_batch=64", "train.threads=1", "search.latency_target=45", "search.rl_lr=0.2"]
    runs = [search(load_config(overrides=overrides + [f"out={tmp_path / d}"], base={"search": {}}), resume=False,
                   progress=False) for d in "ab"]
    assert runs[0]["decision"] == runs[1]["decision"] and runs[0]["selection"] == runs[1]["selection"]
    traces = [(tmp_path / d / "trace.jsonl").read_text() for d in "ab"]
    assert traces[0] == traces[1] and len(traces[0].splitlines()) == 10
    assert json.loads(traces[0].splitlines()[-1])["reward"] is not None
    assert np.isfinite(runs[0]["supernet_quality"])
