"""The copy floor: how close a generator gets to its own input when copying is all it is trained for.

A translation's background L1 (evaluation/synthetic.py) cannot beat what its generator reaches as a
plain autoencoder under the same budget: G trained with L1(G(x), x) alone, no discriminator, no patch
loss, on the synthetic data's trainA and trainB images (batch 1, Adam β (0.5, 0.999), the learning rate
constant for the first half of the iterations and linearly down to 0 over the second, like
recipes/cpu_schedule.txt), then scored on testA outside the object masks every `--eval_every` steps.

    python -m evaluation.copy_floor --data demo_out/synthetic --recipe cpu_budget --iters 1600 --out floor.json

`--recipe` reads the generator flags (--netG, --ngf, --normG, antialiasing, init) from recipes/<name>.txt;
flags given here win. The instance norms of CUT's ResNet generator remove each image's absolute colour,
so on data whose colours vary per image the floor stays above zero however long it trains.
"""
import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from evaluation import curves, synthetic
from evaluation.common import EvaluationError, cli, image_files
from util.recipes import read_recipe
from util.util import atomic_write_json
from util.errors import DivergedError


def generator_parser(defaults_from=None):
    """The generator flags with CUT's defaults, or those of a recipe's flag list `defaults_from`."""
    from options.generator_options import add_generator_options
    p = add_generator_options(argparse.ArgumentParser(add_help=False))
    if defaults_from:
        known, _ = p.parse_known_args(defaults_from)  # a recipe's other flags (patches, epochs) are not ours
        p.set_defaults(**vars(known))
    return p


def define_generator(flags, size):
    """The generator of `flags` (generator_parser's values) for `size`-pixel RGB images, freshly initialised."""
    from models.networks import generator_from_options
    return generator_from_options(flags, input_nc=3, output_nc=3, crop_size=size, load_size=size)


def load_folder(folder, size=None):
    """Every image of `folder` as a (1, 3, H, W) tensor in [-1, 1], all of one square size."""
    tensors = []
    for path in image_files(folder):
        image = synthetic.load_rgb(path)
        if image.shape[0] != image.shape[1] or (size is not None and image.shape[0] != size):
            raise EvaluationError(f'{path} is {image.shape[1]}x{image.shape[0]}; expected square images of one '
                                  f'size{"" if size is None else f" ({size} px)"}')
        size = image.shape[0]
        tensors.append(curves.image_tensor(image))
    return tensors, size


def copy_scores(net, data_root, inputs):
    """Mean background L1 / PSNR of net(x) to x over testA (`inputs`: curves.load_inputs of it), translated as
    evaluation.curves translates a checkpoint (outputs quantised like test.py's PNGs)."""
    was_training = net.training
    net.eval()
    outputs = curves.translate(net, inputs)
    net.train(was_training)
    rows = []
    for name, output in outputs.items():
        source, mask, _ = synthetic.load_answer(data_root, name)
        scores = synthetic.image_scores(output, source, mask)
        rows.append((scores['bg_l1'], scores['bg_psnr'], float(np.abs(output - source).mean())))
    bg_l1, bg_psnr, l1 = (float(np.mean([r[i] for r in rows])) for i in range(3))
    return {'bg_l1': bg_l1, 'bg_psnr': bg_psnr, 'l1': l1}


def learning_rate(step, iters, lr):
    """Constant for the first half of the steps, then linearly to 0 (step counts from 1)."""
    half = iters / 2.0
    return lr if step <= half else lr * max(0.0, (iters - step + 1) / (iters - half + 1))


def train_copy(net, images, size, iters, lr, seed, data_root, eval_every, progress=True):
    """Train `net` on L1(net(x), x) over `images` for `iters` steps; the copy scores every `eval_every`."""
    optimiser = torch.optim.Adam(net.parameters(), lr=lr, betas=(0.5, 0.999))
    test_inputs = curves.load_inputs(data_root, size)  # read once, translated at every evaluation
    order = np.random.default_rng(seed)
    curve = []
    net.train()
    for step in tqdm(range(1, iters + 1), desc='copy floor', unit='it', disable=not progress):
        for group in optimiser.param_groups:
            group['lr'] = learning_rate(step, iters, lr)
        x = images[order.integers(len(images))]
        loss = F.l1_loss(net(x), x)
        if not math.isfinite(loss.item()):
            raise DivergedError(f'the L1 loss became {loss.item()} at step {step}; lower --lr')
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        if step % eval_every == 0 or step == iters:
            curve.append({'iterations': step, 'train_l1': float(loss.item()),
                          **copy_scores(net, data_root, test_inputs)})
    return curve


def main(argv=None):
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument('--recipe', default=None)
    recipe = pre.parse_known_args(argv)[0].recipe
    recipe_flags = read_recipe(recipe) if recipe else None
    gen_parser = generator_parser(recipe_flags)
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], parents=[gen_parser])
    ap.add_argument('--data', required=True, help='a synthetic dataset (datasets/make_synthetic_dataset.py)')
    ap.add_argument('--recipe', default=None, help='read the generator flags from recipes/<name>.txt')
    ap.add_argument('--iters', type=int, default=1600, help='training steps (images, batch size 1)')
    ap.add_argument('--lr', type=float, default=0.0002)
    ap.add_argument('--eval_every', type=int, default=200)
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--out', default=None, help='JSON file for the settings and the curve')
    args = ap.parse_args(argv)
    if args.iters < 1 or args.eval_every < 1:
        raise EvaluationError(f'--iters and --eval_every must be at least 1, got {args.iters} and {args.eval_every}')
    if args.lr <= 0:
        raise EvaluationError(f'--lr must be positive, got {args.lr}')
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    data = Path(args.data)
    images, size = load_folder(data / 'trainA')
    images += load_folder(data / 'trainB', size)[0]
    generator = {k: getattr(args, k) for k in vars(gen_parser.parse_args([]))}
    net = define_generator(generator, size)
    start = time.perf_counter()
    curve = train_copy(net, images, size, args.iters, args.lr, args.seed, data, args.eval_every)
    result = {'data': str(data), 'recipe': recipe, 'generator': generator,
              'iters': args.iters, 'lr': args.lr, 'seed': args.seed, 'threads': args.threads,
              'train_images': len(images), 'size': size, 'wall_s': round(time.perf_counter() - start, 1),
              'curve': curve, 'final': curve[-1]}
    for row in curve:
        print(f'{row["iterations"]:>7} its  background L1 {row["bg_l1"]:.4f}  (PSNR {row["bg_psnr"]:.2f} dB)  '
              f'whole image L1 {row["l1"]:.4f}')
    if args.out:
        atomic_write_json(args.out, result)
        print(f'wrote {args.out}')
    return 0


if __name__ == '__main__':
    raise SystemExit(cli(main))
