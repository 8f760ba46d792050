"""Evolution search of a channel configuration under a MACs budget (evaluation/search.py)."""
import json

import pytest

from evaluation.macs import mobile_macs
from evaluation.search import EvolutionSearch, SearchSettings
from models.networks.compression import ChannelConfigs, encode_config

SPACE = 'channels-16'
BUDGET = 18e6  # MACs at 64 px: about 5 % of channels-16 fits, as the paper's horse->zebra budget


def macs64(config):
    return mobile_macs(config, 64)


class Criterion:
    """A made-up score with a known shape (wide residual stream, thin decoder), counting its calls."""

    def __init__(self, fail_after=None):
        self.calls = []
        self.fail_after = fail_after

    def __call__(self, config):
        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            raise KeyboardInterrupt('killed')
        self.calls.append(encode_config(config))
        return 2.0 * config[2] + config[3] - 0.5 * config[6] - 0.25 * config[7] + 0.01 * config[0]


def run(tmp_path=None, log='log.jsonl', criterion=None, **overrides):
    settings = SearchSettings(**{'budget': BUDGET, 'population_size': 8, 'generations': 4, 'mutate_prob': 0.4,
                                 'weighted_sample': 2, 'seed': 0, **overrides})
    path = None if tmp_path is None else str(tmp_path / log)
    search = EvolutionSearch(ChannelConfigs(SPACE), criterion or Criterion(), True, macs64, settings,
                             log_path=path, progress=False)
    return search.run()


def read_log(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_same_seed_same_search(tmp_path):
    a = run(tmp_path, 'a.jsonl')
    b = run(tmp_path, 'b.jsonl')
    assert a['best'] == b['best'] and a['history'] == b['history']
    assert (tmp_path / 'a.jsonl').read_text() == (tmp_path / 'b.jsonl').read_text()
    other = run(tmp_path, 'c.jsonl', seed=1)
    assert [r['config'] for r in read_log(tmp_path / 'c.jsonl')[1:]] != \
        [r['config'] for r in read_log(tmp_path / 'a.jsonl')[1:]]


def test_budget_cache_and_log(tmp_path):
    criterion = Criterion()
    result = run(tmp_path, criterion=criterion)
    lines = read_log(tmp_path / 'log.jsonl')
    assert lines[0]['kind'] == 'settings' and lines[0]['budget'] == BUDGET and lines[0]['space'] == SPACE
    candidates = lines[1:]
    assert len(candidates) == 8 * 5 == result['candidates']
    assert [c['index'] for c in candidates] == list(range(40))
    assert all(c['macs'] == macs64(tuple(map(int, c['config'].split('_')))) <= BUDGET for c in candidates)
    # each configuration is scored once; repeats come from the cache
    assert len(criterion.calls) == len(set(criterion.calls)) == result['evaluations']
    assert sum(not c['cached'] for c in candidates) == len(criterion.calls)
    # generation 0 random; later ones half mutations, half crossovers
    assert {c['origin'] for c in candidates if c['generation'] == 0} == {'random'}
    for g in range(1, 5):
        origins = [c['origin'] for c in candidates if c['generation'] == g]
        assert origins == ['mutation'] * 4 + ['crossover'] * 4
    # the best never gets worse, and is the best candidate ever scored
    scores = [h['score'] for h in result['history']]
    assert scores == sorted(scores)
    assert result['best']['score'] == max(c['score'] for c in candidates)
    assert result['best']['macs'] <= BUDGET


def test_budget_below_the_smallest_configuration():
    with pytest.raises(ValueError, match='below the smallest configuration 4_4_4_4_4_4_4_4'):
        run(budget=macs64((4,) * 8) - 1)


def test_lower_is_better():
    settings = SearchSettings(budget=BUDGET, population_size=6, generations=2, seed=3)
    result = EvolutionSearch(ChannelConfigs(SPACE), lambda c: float(sum(c)), False, macs64, settings,
                             progress=False).run()
    assert result['best']['score'] == min(h['score'] for h in result['history'])


@pytest.mark.parametrize('kill_after', [0, 5, 17])
def test_resume_after_a_kill_gives_the_same_search(tmp_path, kill_after):
    whole = run(tmp_path, 'whole.jsonl')
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, 'resumed.jsonl', criterion=Criterion(fail_after=kill_after))
    assert len(read_log(tmp_path / 'resumed.jsonl')) < len(read_log(tmp_path / 'whole.jsonl'))
    # a line cut short by the kill
    with open(tmp_path / 'resumed.jsonl', 'a') as f:
        f.write('{"kind": "candid')
    criterion = Criterion()
    resumed = run(tmp_path, 'resumed.jsonl', criterion=criterion)
    assert resumed['best'] == whole['best'] and resumed['history'] == whole['history']
    assert (tmp_path / 'resumed.jsonl').read_text() == (tmp_path / 'whole.jsonl').read_text()
    # the candidates scored before the kill are not scored again
    assert len(criterion.calls) == whole['evaluations'] - kill_after
    # a finished search replays without scoring anything
    again = Criterion()
    assert run(tmp_path, 'resumed.jsonl', criterion=again)['best'] == whole['best'] and again.calls == []


def test_resume_with_other_settings_is_refused(tmp_path):
    run(tmp_path)
    with pytest.raises(ValueError, match='other settings'):
        run(tmp_path, mutate_prob=0.3)


def test_bad_settings():
    with pytest.raises(ValueError, match='parent_ratio'):
        run(parent_ratio=0)
    with pytest.raises(ValueError, match='weight strategy'):
        run(weight_strategy='harmonic')
