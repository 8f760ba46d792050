"""Step 2 of Fast GAN Compression: search the super-net of a step-1 run for the best configuration under a
MACs budget, scoring each candidate on a held-out split of the training set.

    # horse->zebra (the official recipe: train2A, FID against all zebra images, budget 3 G MACs)
    python scripts/evolution_search.py --checkpoints_dir checkpoints --name h2z_supernet \
        --dataroot datasets/horse2zebra --phase train2 --criterion fid --real_stats real_stat/horse2zebra_B.npz \
        --budget 3e9 --mutate_prob 0.4 --weighted_sample 2 --output_dir search/h2z
    # map->satellite (pix2pix teacher, aligned data, --direction BtoA): train2 = the search split, FID against
    # the real statistics of its satellite photos, budget 4.6 G MACs
    python scripts/evolution_search.py --checkpoints_dir checkpoints --name map2sat_supernet \
        --dataroot datasets/maps --phase train2 --criterion fid --real_stats real_stat/maps_subtrain_A.npz \
        --budget 4.6e9 --mutate_prob 0.3 --output_dir search/map2sat
    # Cityscapes label->photo: mIoU of DRN-D-105 on the translations of train2 (gan-compression's criterion mIoU)
    python scripts/evolution_search.py --checkpoints_dir checkpoints --name city_supernet \
        --dataroot database/cityscapes --phase train2 --criterion miou --table database/cityscapes/train_table.txt \
        --cityscapes_root database/cityscapes-origin --drn_weights drn-d-105_ms_cityscapes.pth \
        --budget 5.7e9 --mutate_prob 0.3 --batch_size 4 --output_dir search/city
    # the synthetic task on CPU: mean stripe IoU on valA with its masks
    python scripts/evolution_search.py --checkpoints_dir checkpoints --name syn_supernet \
        --dataroot datasets/synthetic --phase val --criterion synthetic --budget 18e6 \
        --population_size 16 --generations 8 --mutate_prob 0.4 --weighted_sample 2 --output_dir search/syn

The super-net is <checkpoints_dir>/<name>/<epoch>_net_G.pth, built from the run's train_opt.json; the
candidates are translations of <dataroot>/<phase>A (<phase>B for --direction BtoA) at the run's crop size; for a
run on --dataset_mode aligned, of the left (AtoB) or right (BtoA) halves of the [A | B] images in <dataroot>/<phase>.
Writes <output_dir>/candidates.jsonl (one line per candidate; a search started again on it resumes) and
<output_dir>/result.json (the best configuration, its MACs and parameters, the best per generation, the inputs).
The log's first line records what its scores depend on (the super-net's SHA-256, the criterion and metric, the images'
names and bytes, the statistics, weights and labels the criterion reads): a search whose inputs differ refuses
the log, naming what changed, unless --restart starts it over. One search at a time holds <output_dir>
(its lock file, as train.py's).
MACs are the closed form of evaluation/macs.py (torchprofile's count, tested equal) at the crop size.
"""
import argparse
import json
import os
import sys
import tempfile

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from evaluation import synthetic  # noqa: E402
from evaluation.common import EvaluationError, default_device, image_files  # noqa: E402
from evaluation.macs import mobile_macs, mobile_params  # noqa: E402
from evaluation.search import (EvolutionSearch, SearchSettings, files_digest,  # noqa: E402
                               load_run_generator)
from models.networks.compression import CONFIG_SETS, ChannelConfigs, SuperMobileResnetGenerator  # noqa: E402
from util import errors, util  # noqa: E402
from util.util import sha256  # noqa: E402
from util.errors import FolderInUseError  # noqa: E402
from util.run_lock import LOCK_NAME, RunLock  # noqa: E402

CRITERIA = ('fid', 'synthetic', 'miou')
SYNTHETIC_METRICS = sorted(synthetic.METRICS) + sorted(synthetic.DATASET_METRICS)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--checkpoints_dir', default='./checkpoints')
    p.add_argument('--name', required=True, help='the step-1 run (its super-net G and train_opt.json)')
    p.add_argument('--epoch', default='latest')
    p.add_argument('--dataroot', default=None, help="the dataset (default: the run's --dataroot)")
    p.add_argument('--phase', default='val', help='the held-out split: <dataroot>/<phase>A are translated')
    p.add_argument('--num_images', type=int, default=None, help='score on the first N images only')
    p.add_argument('--output_dir', required=True)
    p.add_argument('--restart', action='store_true',
                   help="start over on a log whose scores depend on other inputs (weights, images, criterion) "
                        'instead of refusing it')
    p.add_argument('--criterion', type=str.lower, choices=CRITERIA, required=True,
                   help='fid (lower is better), synthetic (a synthetic-task score), miou (Cityscapes DRN-D-105 mIoU, '
                        "higher; gan-compression's mIoU)")
    p.add_argument('--real_stats', default=None,
                   help='fid: the real images, a .npz with mu and sigma (e.g. horse2zebra_B.npz) or a folder')
    p.add_argument('--fid_weights', default=None, help='fid: the FID Inception weights file (evaluation/fid.py)')
    p.add_argument('--dims', type=int, default=2048, help='fid: Inception feature size (2048: the FID protocol)')
    p.add_argument('--table', default=None,
                   help="miou: the mapping table of the search images (prepare_cityscapes_dataset.py --aligned "
                        '--tables: train_table.txt)')
    p.add_argument('--cityscapes_root', default=None, help='miou: the folder the paths of --table are relative to')
    p.add_argument('--drn_weights', default=None, help='miou: drn-d-105_ms_cityscapes.pth')
    p.add_argument('--metric', default='stripe_iou', choices=SYNTHETIC_METRICS,
                   help="synthetic: the score to optimise (kid against <dataroot>/<phase>B)")
    p.add_argument('--config_set', default=None, choices=sorted(CONFIG_SETS),
                   help="the configurations searched (default: the run's --config_set)")
    p.add_argument('--budget', type=float, required=True, help='the MACs budget per image at the crop size')
    p.add_argument('--population_size', type=int, default=100)
    p.add_argument('--generations', '--evolution_iters', dest='generations', type=int, default=500)
    p.add_argument('--parent_ratio', type=float, default=0.25)
    p.add_argument('--mutation_ratio', type=float, default=0.5)
    p.add_argument('--mutate_prob', type=float, default=0.2)
    p.add_argument('--weighted_sample', type=float, default=1.0,
                   help='> 1 weights the first generation toward small widths (gan-compression)')
    p.add_argument('--weight_strategy', default='arithmetic', choices=['arithmetic', 'geometric'])
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--batch_size', type=int, default=8, help='images per generator call')
    p.add_argument('--device', default=None, help='cuda, cuda:0 or cpu (default: cuda when available)')
    p.add_argument('--no_tqdm', action='store_true')
    args = p.parse_args(argv)
    if args.num_images is not None and args.num_images < 1:
        raise errors.ConfigError(f'--num_images must be >= 1 (or left out for every image), got {args.num_images}')
    return args


def config_set_of(args, opts):
    name = args.config_set or opts.get('config_set')
    if not name:
        try:
            from models.compression_model import default_config_set
        except ImportError:
            default_config_set = None
        if default_config_set is None:
            raise SystemExit('error: the run names no --config_set; give one')
        name = default_config_set(opts['ngf'])
    return ChannelConfigs(name)


def load_sources(folder, crop_size, exact, limit=None, half=None):
    """[(stem, (3, S, S) tensor in [-1, 1])] of the images in `folder` (their 'left' or 'right' half when `half`
    is given: aligned [A | B] files), resized to crop_size (bicubic, as the data loader's resize) unless `exact`,
    where another size is an error; and the files read."""
    files = image_files(folder)[:limit]
    out = []
    for path in files:
        with Image.open(path) as img:
            img = img.convert('RGB')
            if half is not None:
                w = img.size[0] // 2
                img = img.crop((0, 0, w, img.size[1]) if half == 'left' else (w, 0, 2 * w, img.size[1]))
            if img.size != (crop_size, crop_size):
                if exact:
                    raise EvaluationError(f'{path} is {img.size[0]}x{img.size[1]}, the run was trained at '
                                          f'--crop_size {crop_size}')
                img = img.resize((crop_size, crop_size), Image.BICUBIC)
            array = np.asarray(img, dtype=np.float32) / 255.0
        out.append((path.stem, torch.from_numpy(array.transpose(2, 0, 1)) * 2 - 1))
    return out, files


@torch.no_grad()
def translate(net, sources, batch_size, device):
    """{stem: (H, W, 3) uint8} translations, quantised as test.py's saved images (util.tensor2im)."""
    out = {}
    for i in range(0, len(sources), batch_size):
        chunk = sources[i:i + batch_size]
        fake = net(torch.stack([x for _, x in chunk]).to(device))
        for (stem, _), image in zip(chunk, fake):
            out[stem] = util.tensor2im(image[None])
    return out


def fid_criterion(args, net, sources, device):
    """FID of the translations against --real_stats (mu/sigma .npz or a folder of real images); returns the
    score function, its direction and what the scores depend on."""
    from evaluation.fid import (InceptionFeatures, build_inception, feature_statistics, frechet_distance,
                                load_fid_weights, load_real_stats)
    if not args.real_stats:
        raise SystemExit('error: --criterion fid needs --real_stats (a .npz with mu and sigma, or a folder)')
    if not os.path.isdir(args.real_stats):  # a statistics file: checked before the Inception weights are loaded
        real_stats = load_real_stats(args.real_stats, args.dims)
        stats_digest = {'sha256': sha256(args.real_stats)}
    state, path = load_fid_weights(args.fid_weights)
    features = InceptionFeatures(build_inception(state, dims=args.dims, device=device, source=str(path)),
                                 dims=args.dims, device=device)
    if os.path.isdir(args.real_stats):
        real_stats = feature_statistics(features(args.real_stats)[0])
        stats_digest = files_digest(image_files(args.real_stats))
    inputs = {'metric': 'fid', 'dims': args.dims, 'fid_weights_sha256': sha256(path),
              'real_stats': stats_digest}

    def score(config):
        images = translate(net.set_config(config), sources, args.batch_size, device)
        with tempfile.TemporaryDirectory() as tmp:
            for stem, image in images.items():
                Image.fromarray(image).save(os.path.join(tmp, f'{stem}.png'))
            fake = features(tmp)[0]
        return frechet_distance(feature_statistics(fake), real_stats)
    return score, False, inputs


def synthetic_criterion(args, net, sources, device, data_root):
    """Mean of a synthetic-task score of the translations, with <phase>A_mask (and <phase>B for KID)."""
    side = 'A'
    mask_dir = os.path.join(data_root, f'{args.phase}{side}_mask')
    if not os.path.isdir(mask_dir):
        raise SystemExit(f'error: --criterion synthetic needs the object masks {mask_dir} '
                         '(datasets/make_synthetic_dataset.py writes them)')
    answers, masks = {}, []
    for stem, x in sources:
        image = (x.numpy().transpose(1, 2, 0) + 1) / 2
        mask = synthetic.load_rgb(os.path.join(mask_dir, f'{stem}.png'), image.shape[1::-1])[..., 0] > 0.5
        answers[stem] = (np.round(image * 255) / 255, mask)
        masks.append(os.path.join(mask_dir, f'{stem}.png'))
    inputs = {'metric': args.metric, 'masks': files_digest(masks)}
    reference = None
    if args.metric in synthetic.DATASET_METRICS:
        reference_files = image_files(os.path.join(data_root, f'{args.phase}B'))
        reference = synthetic.reference_features([synthetic.load_rgb(p) for p in reference_files])
        inputs['reference'] = files_digest(reference_files)
    higher = {**synthetic.METRICS, **synthetic.DATASET_METRICS}[args.metric][1]

    def score(config):
        images = translate(net.set_config(config), sources, args.batch_size, device)
        names = sorted(images)
        outputs = [images[n].astype(np.float64) / 255.0 for n in names]
        rows = [synthetic.image_scores(out, *answers[n]) for n, out in zip(names, outputs)]
        return synthetic.mean_scores(rows, outputs, reference)[0][args.metric]
    return score, higher, inputs


def miou_criterion(args, net, sources, device, segmenter=None):
    """gan-compression's mIoU criterion: DRN-D-105 (--drn_weights; `segmenter` stands in for it in tests) on the
    uint8 translations, scores upsampled to each gtFine trainIds label of --table, one confusion matrix."""
    from evaluation import miou
    from evaluation.cityscapes import confusion_matrix
    if not (args.table and args.cityscapes_root):
        raise SystemExit('error: --criterion miou needs --table (train_table.txt) and --cityscapes_root')
    if segmenter is None:
        if not args.drn_weights:
            raise SystemExit('error: --criterion miou needs --drn_weights (drn-d-105_ms_cityscapes.pth)')
        segmenter = miou.pretrained_drn(args.drn_weights, device=device, arch='drn_d_105')
    stems = [stem for stem, _ in sources]
    label_files = [os.path.join(args.cityscapes_root, label)
                   for label in miou.match_labels(stems, miou.read_table(args.table))]
    labels = dict(zip(stems, map(miou.read_train_ids, label_files)))
    for (stem, x), label_file in zip(sources, label_files):
        miou.check_label_size(x.shape[1:], labels[stem].shape, miou.output_stride(segmenter), stem, label_file)
    inputs = {'metric': 'mIoU', 'table_sha256': sha256(args.table), 'labels': files_digest(label_files),
              'drn_weights_sha256': sha256(args.drn_weights) if args.drn_weights else None}

    def score(config):
        images = translate(net.set_config(config), sources, args.batch_size, device)
        cm = np.zeros((miou.NUM_CLASSES, miou.NUM_CLASSES), dtype=np.int64)
        for stem, photo in images.items():
            pred = miou.predict_full_size(segmenter, [photo], labels[stem].shape, device)[0]
            cm += confusion_matrix(labels[stem], pred)
        return miou.miou_scores(cm)['mIoU']
    return score, True, inputs


def main(argv=None):
    args = parse_args(argv)
    device = args.device or default_device()
    run_dir = os.path.join(args.checkpoints_dir, args.name)
    net, opts = load_run_generator(run_dir, args.epoch, device)
    if not isinstance(net, SuperMobileResnetGenerator):
        raise SystemExit(f'error: {run_dir} trained --netG {opts["netG"]}; the search needs a super-net '
                         '(--netG super_mobile_resnet_9blocks, --model compression)')
    space = config_set_of(args, opts)
    data_root = args.dataroot or opts['dataroot']
    side = 'B' if opts.get('direction') == 'BtoA' else 'A'
    half = None
    if opts.get('dataset_mode') == 'aligned':
        folder, half = os.path.join(data_root, args.phase), 'right' if side == 'B' else 'left'
    else:
        folder = os.path.join(data_root, f'{args.phase}{side}')
    crop = opts['crop_size']
    exact = args.criterion == 'synthetic'
    if exact and side != 'A':
        raise SystemExit('error: --criterion synthetic scores A -> B translations (--direction AtoB)')
    sources, files = load_sources(folder, crop, exact, args.num_images, half)
    if args.criterion == 'fid':
        criterion, higher, inputs = fid_criterion(args, net, sources, device)
    elif args.criterion == 'miou':
        criterion, higher, inputs = miou_criterion(args, net, sources, device)
    else:
        criterion, higher, inputs = synthetic_criterion(args, net, sources, device, data_root)
    # what the scores depend on besides the settings: a log of other inputs is not replayed
    inputs = {'criterion': args.criterion, **inputs,
              'weights_sha256': sha256(os.path.join(run_dir, f'{args.epoch}_net_G.pth')),
              'images': {'half': half, 'crop_size': crop, **files_digest(files)}}
    settings = SearchSettings(budget=args.budget, population_size=args.population_size,
                              generations=args.generations, parent_ratio=args.parent_ratio,
                              mutation_ratio=args.mutation_ratio, mutate_prob=args.mutate_prob,
                              weighted_sample=args.weighted_sample, weight_strategy=args.weight_strategy,
                              seed=args.seed)
    in_nc, out_nc = opts['input_nc'], opts['output_nc']
    search = EvolutionSearch(space, criterion, higher, lambda c: mobile_macs(c, crop, input_nc=in_nc, output_nc=out_nc),
                             settings, log_path=os.path.join(args.output_dir, 'candidates.jsonl'),
                             progress=not args.no_tqdm, inputs=inputs, restart=args.restart)
    lock = output_lock(args.output_dir)
    try:
        result = search.run()
        best = result['best']
        best['params'] = mobile_params(best['config'], in_nc, out_nc, use_bias=opts['normG'] == 'instance')
        result.update(run_dir=os.path.abspath(run_dir), epoch=args.epoch, criterion=args.criterion,
                      metric={'fid': 'fid', 'miou': 'mIoU'}.get(args.criterion, args.metric),
                      source_dir=os.path.abspath(folder), num_images=len(sources), crop_size=crop,
                      config_set=space.name, real_stats=args.real_stats and os.path.abspath(args.real_stats),
                      inputs=inputs)
        util.atomic_write_json(os.path.join(args.output_dir, 'result.json'), result)
    finally:
        lock.release()
    print(f'best configuration {best["config"]}: {result["metric"]} {best["score"]:.4f}, '
          f'{best["macs"] / 1e9:.4f} G MACs, {best["params"] / 1e6:.4f} M params '
          f'({result["evaluations"]} configurations scored) -> {os.path.join(args.output_dir, "result.json")}')
    return result


def output_lock(folder):
    """The lock of train.py's run folders (util/run_lock.py) on --output_dir: two searches appending to one log
    would interleave their candidates."""
    try:
        return RunLock(folder).acquire()
    except FolderInUseError:
        try:
            with open(os.path.join(folder, LOCK_NAME)) as f:
                holder = json.load(f)
            who = f'PID {holder["pid"]} on {holder["host"]}: {holder["command"]}'
        except (OSError, ValueError, KeyError, TypeError):
            who = 'another process'
        raise FolderInUseError(f'--output_dir {folder} is in use by another search ({who}); two searches in one '
                               'folder would mix their logs. Wait for it to end, stop it, or choose another '
                               '--output_dir') from None


if __name__ == '__main__':
    sys.exit(errors.guard(lambda argv: main(argv) and 0))
