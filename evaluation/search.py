"""Step 2 of Fast GAN Compression: evolution search of a channel configuration under a MACs budget.

As gan-compression's evolution_search.py: a first population of `population_size` configurations drawn
(optionally weighted toward small widths) and each redrawn until its MACs fit the budget; then per
generation the best `parent_ratio` of the population are kept as parents, `mutation_ratio` of the new
children are mutations of a random parent (each position redrawn with `mutate_prob`) and the rest uniform
crossovers of two random parents, every child redrawn until it fits the budget. Scores are cached by
configuration string. Unlike upstream, the result ranks the last generation's children too.

All randomness comes from the configuration space's own RNG (`ChannelConfigs(seed=...)`), so a search is a
function of its settings and of the criterion. The log is JSON lines: a settings line, then one line per
candidate (generation, origin, configuration, MACs, score, whether it came from the cache). A search
started again on the same log replays the logged candidates (their scores are read, not recomputed),
checks that they are the ones it draws, and continues: a search killed after k candidates ends exactly
as an uninterrupted one.
"""
import json
import math
import os
from dataclasses import asdict, dataclass

from tqdm import tqdm

from models.networks.compression import ChannelConfigs, decode_config, encode_config
from util.errors import CheckpointError, ConfigError, DivergedError, MissingFileError
from util.util import atomic_write_text, sha256

MAX_REDRAWS = 100000


@dataclass
class SearchSettings:
    budget: float
    population_size: int = 100
    generations: int = 500
    parent_ratio: float = 0.25
    mutation_ratio: float = 0.5
    mutate_prob: float = 0.2
    weighted_sample: float = 1.0
    weight_strategy: str = 'arithmetic'
    seed: int = 0

    def check(self):
        if self.population_size < 1 or self.generations < 0:
            raise ConfigError(f'population_size must be >= 1 and generations >= 0, got {self.population_size} and '
                             f'{self.generations}')
        if not 0 < self.parent_ratio <= 1 or not 0 <= self.mutation_ratio <= 1 or not 0 <= self.mutate_prob <= 1:
            raise ConfigError('parent_ratio must be in (0, 1], mutation_ratio and mutate_prob in [0, 1]')
        if self.weight_strategy not in ('arithmetic', 'geometric'):
            raise ConfigError(f'unknown weight strategy {self.weight_strategy!r}; valid names: arithmetic, geometric')


def header_differences(old, new, prefix=''):
    """'key: old -> new; ...' of the entries two log headers disagree on (nested dicts by dotted key)."""
    out = []
    for key in sorted(set(old) | set(new), key=str):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            inner = header_differences(a, b, f'{prefix}{key}.')
            out += [inner] if inner else []
        elif a != b:
            out.append(f'{prefix}{key}: {_short(a)} -> {_short(b)}')
    return '; '.join(out)


def _short(value, n=40):
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= n else text[:n - 3] + '...'


class _Log:
    """The JSON-lines log: lines already there are replayed, new ones appended and flushed one by one.

    The file is never rewritten in place: a line cut short by a kill is cut off with one truncate (the complete
    lines stay on disk whatever moment a second kill lands), and a new log is written as a temporary file and
    renamed. `restart` starts a new log over an existing one."""

    def __init__(self, path, header, restart=False):
        self.path = path
        self.replay = []
        if path is None:
            self.file = None
            return
        lines, complete = [], 0
        if os.path.exists(path) and not restart:
            with open(path, 'rb') as f:
                raw = f.read()
            for line in raw.split(b'\n')[:-1]:  # the part after the last newline is a line cut short
                try:
                    lines.append(json.loads(line))
                except ValueError:
                    break  # a damaged line: it and anything after it are redone
                complete += len(line) + 1
            if lines and lines[0] != header:
                raise ConfigError(f'{path} holds the scores of another search ({header_differences(lines[0], header)}): '
                                 'start over with --restart (scripts/evolution_search.py), or choose another log')
            if complete < len(raw):
                os.truncate(path, complete)
        if not lines:
            atomic_write_text(path, json.dumps(header, sort_keys=True) + '\n')
            lines = [header]
        self.file = open(path, 'a')
        self.replay = lines[1:]

    def _write(self, record):
        self.file.write(json.dumps(record, sort_keys=True) + '\n')
        self.file.flush()
        os.fsync(self.file.fileno())

    def record(self, index, record):
        """Write candidate `index`; when the log already holds it, check that the replay drew the same one."""
        if index < len(self.replay):
            logged = self.replay[index]
            if (logged['config'], logged['generation'], logged['origin']) != \
                    (record['config'], record['generation'], record['origin']):
                raise ConfigError(f'{self.path}: candidate {index} was {logged["config"]} ({logged["origin"]}), '
                                 f'this search draws {record["config"]}: the log belongs to another search')
            return logged
        if self.file is not None:
            self._write(record)
        return record

    def close(self):
        if self.file is not None:
            self.file.close()


class EvolutionSearch:
    """`criterion(config) -> score` (config a tuple of 8 ints), `higher_is_better` its direction;
    `macs(config) -> int` the cost checked against `settings.budget` (evaluation.macs.mobile_macs)."""

    def __init__(self, space, criterion, higher_is_better, macs, settings, log_path=None, progress=True,
                 inputs=None, restart=False):
        settings.check()
        self.space = space if isinstance(space, ChannelConfigs) else ChannelConfigs(space)
        self.space.rng.seed(settings.seed)
        self.criterion = criterion
        self.higher_is_better = bool(higher_is_better)
        self.macs = macs
        self.settings = settings
        self.log_path = log_path
        self.inputs = inputs
        self.restart = restart
        self.progress = progress
        self.macs_cache = {}
        self.score_cache = {}
        smallest = self._cost(self.space.smallest())
        if smallest > settings.budget:
            raise ConfigError(f'budget {settings.budget:.4g} MACs is below the smallest configuration '
                             f'{encode_config(self.space.smallest())} ({smallest:.4g} MACs)')

    def header(self):
        """The log's first line: the settings and, when given, what the scores depend on (`inputs`: weights,
        images, criterion, statistics); a log whose header differs is not replayed."""
        header = {'kind': 'settings', 'space': self.space.name or self.space.choices,
                  'higher_is_better': self.higher_is_better, **asdict(self.settings)}
        if self.inputs is not None:
            header['inputs'] = self.inputs
        return header

    def _cost(self, config):
        key = encode_config(config)
        if key not in self.macs_cache:
            self.macs_cache[key] = int(self.macs(config))
        return self.macs_cache[key]

    def _under_budget(self, draw, what):
        for _ in range(MAX_REDRAWS):
            config = decode_config(draw())
            if self._cost(config) <= self.settings.budget:
                return config
        raise CheckpointError(f'no {what} under the budget {self.settings.budget:.4g} MACs in {MAX_REDRAWS} draws')

    def _key(self, entry):
        return -entry['score'] if self.higher_is_better else entry['score']

    def _evaluate(self, configs, origins, generation):
        entries = []
        for config, origin in zip(configs, origins):
            key = encode_config(config)
            index = self._count
            logged = self._log.replay[index] if index < len(self._log.replay) else None
            cached = key in self.score_cache
            if cached:
                score = self.score_cache[key]
            elif logged is not None and logged['config'] == key:
                score = logged['score']  # replaying a resumed search: the score was measured before
            else:
                score = float(self.criterion(config))
            if not math.isfinite(score):
                raise DivergedError(f'the criterion gave {score} for configuration {key}: a non-finite score cannot be '
                                 'ranked (check the statistics, weights and images it is computed from)')
            self.score_cache[key] = score
            record = {'kind': 'candidate', 'index': index, 'generation': generation, 'origin': origin,
                      'config': key, 'macs': self._cost(config), 'score': score, 'cached': cached}
            self._log.record(index, record)
            self._count += 1
            entries.append(record)
            self._bar.update(1)
        return entries

    def run(self):
        """Returns {'best': {config, score, macs}, 'history': best per generation, counts}."""
        s = self.settings
        n_parents = max(1, int(round(s.parent_ratio * s.population_size)))
        n_mutations = int(round(s.mutation_ratio * s.population_size))
        self._log = _Log(self.log_path, self.header(), self.restart)
        self._count = 0
        self._bar = tqdm(total=s.population_size * (s.generations + 1), desc='evolution search', unit='cand',
                         disable=not self.progress)
        try:
            first = [self._under_budget(lambda: self.space.sample(s.weighted_sample, s.weight_strategy), 'sample')
                     for _ in range(s.population_size)]
            population = self._evaluate(first, ['random'] * len(first), 0)
            history = []
            for generation in range(1, s.generations + 1):
                parents = sorted(population, key=self._key)[:n_parents]
                history.append(self._summary(parents[0], generation - 1))
                self._bar.set_postfix(best=f'{parents[0]["score"]:.4g}', config=parents[0]['config'])
                rng = self.space.rng
                children, origins = [], []
                for _ in range(n_mutations):
                    parent = parents[rng.randrange(n_parents)]['config']
                    children.append(self._under_budget(lambda: self.space.mutate(parent, s.mutate_prob), 'mutation'))
                    origins.append('mutation')
                for _ in range(s.population_size - n_mutations):
                    a, b = (parents[rng.randrange(n_parents)]['config'] for _ in range(2))
                    children.append(self._under_budget(lambda: self.space.crossover(a, b), 'crossover'))
                    origins.append('crossover')
                population = parents + self._evaluate(children, origins, generation)
            best = sorted(population, key=self._key)[0]
            history.append(self._summary(best, s.generations))
        finally:
            self._bar.close()
            self._log.close()
        return {'best': self._summary(best, None), 'history': history, 'candidates': self._count,
                'evaluations': len(self.score_cache), 'higher_is_better': self.higher_is_better,
                'settings': asdict(s), 'log': self.log_path}

    @staticmethod
    def _summary(entry, generation):
        out = {'config': entry['config'], 'score': entry['score'], 'macs': entry['macs']}
        if generation is not None:
            out['generation'] = generation
        return out


def load_run_generator(run_dir, epoch='latest', device='cpu'):
    """The generator of a train.py run folder (<run_dir>/<epoch>_net_G.pth, built from its train_opt.json)
    and the run's options."""
    from evaluation.curves import load_run_options
    from models.networks import generator_from_options
    from util.util import safe_torch_load, state_dict_mismatch, strip_module_prefix
    opts = load_run_options(run_dir)
    path = os.path.join(run_dir, f'{epoch}_net_G.pth')
    if not os.path.isfile(path):
        raise MissingFileError(f'{path} not found (expected <checkpoints_dir>/<name>/<epoch>_net_G.pth)')
    net = generator_from_options(opts, init_weights=False)
    state = strip_module_prefix(safe_torch_load(path))
    mismatch = state_dict_mismatch(net.state_dict(), state)
    if mismatch:
        raise ConfigError(f'{path} does not fit --netG {opts["netG"]} --ngf {opts["ngf"]} of {run_dir}/train_opt.json: '
                         f'{mismatch}')
    net.load_state_dict(state, strict=True)
    return net.to(device).eval(), opts


def files_digest(paths):
    """{'count', 'sha256'} of a list of files: one digest over their names and bytes, in order."""
    listing = b''.join(os.path.basename(str(path)).encode() + b'\0' + sha256(path).encode() for path in paths)
    return {'count': len(paths), 'sha256': sha256(listing)}
