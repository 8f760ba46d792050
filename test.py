"""Translate the test split with a trained generator (CUT's command line).

    python test.py --dataroot ./datasets/horse2zebra --name h2z --epoch latest

The networks are built as the run trained them: --model, --netG, --ngf, ... default to the values in
<checkpoints_dir>/<name>/train_opt.json (a flag given here wins, and the difference is printed).

Writes <results_dir>/<name>/<phase>_<epoch>/images/{real_A,fake_B,real_B}/<image>.png, an index.html
and results.json (counts, timing, where the images are). Its `num_source_images` of `test_set_images` says
whether the whole test split was translated: CUT's --num_test 50 default stops earlier on a larger split,
and the metrics (evaluation.fid, evaluation.cityscapes) refuse such a partial folder. With --similarity_maps, the first
--sim_num images also get the paper's Figure 9 (images/similarity/<image>.png, shown in index.html):
per nce_layer, the similarity of the --sim_query point to every location, on the input and on
its translation (see scripts/similarity_maps.py).
"""
import contextlib
import os
import sys
import time

import torch
from tqdm import tqdm

from data import create_dataset
from evaluation import similarity
from models import create_model
from models.runtime import Runtime, flag_device
from options.test_options import TestOptions
from util import errors, run_folder, util
from util.html import HTML
from util.visualizer import save_images


def add_similarity_maps(webpage, model, opt, inputs):
    """Render Figure 9 for each (name, input) of `inputs` into images/similarity/ and the page."""
    netG = model.netG
    layers = model.nce_layers
    f_path = os.path.join(opt.checkpoints_dir, opt.name, f'{opt.epoch}_net_F.pth')
    channels = similarity.encoder_channels(netG, inputs[0][1], layers)
    netF = similarity.choose_sampler(opt.sim_features, f_path, kind=opt.netF, nc=opt.netF_nc,
                                     in_channels=channels, device=model.device)
    used = 'F-projected' if netF is not None else 'raw encoder'
    webpage.add_header(f'Similarity maps (Figure 9): query ({opt.sim_query[0]:g}, {opt.sim_query[1]:g}), '
                       f'{used} features of layers {", ".join(map(str, layers))}')
    for name, image in inputs:
        result = similarity.similarity_maps(netG, image, layers, opt.sim_query, netF=netF)
        relative = f'similarity/{name}.png'
        figure = similarity.render_figure(result, image, opt.sim_query)
        path = os.path.join(webpage.get_image_dir(), relative)
        util.mkdirs(os.path.dirname(path))
        util.atomic_write(path, lambda f: figure.save(f, format='PNG'), binary=True)
        agreement = ', '.join(f'{v:.2f}' for v in result['agreement'])
        webpage.add_images([relative], [f'{name}: A/B map correlation per layer {agreement}'], [relative],
                           width=figure.width)
    return {'features': used, 'query': list(opt.sim_query), 'layers': list(layers), 'num_images': len(inputs),
            'dir': os.path.abspath(os.path.join(webpage.get_image_dir(), 'similarity'))}


def test_set_images(dataset, opt):
    """Distinct source images of the split (the paper scores one translation of each): the source domain's
    files of an unaligned set, the one image of a single-image set, else one per item."""
    inner = dataset.dataset
    side = 'B' if opt.direction == 'BtoA' else 'A'
    paths = getattr(inner, f'{side}_paths', getattr(inner, 'A_paths', None))
    if isinstance(paths, (list, tuple)):
        return min(len(set(paths)), len(dataset))
    return 1 if hasattr(inner, f'{side}_path') else len(dataset)


def run_test(opt):
    """Translate the test split; with --similarity_maps, also render Figure 9 maps."""
    if opt.gpu_ids:  # the current device: where kernels launch and unqualified CUDA calls act (as train.py)
        torch.cuda.set_device(flag_device(opt))
    dataset = create_dataset(opt)
    runtime = Runtime.from_options(opt)
    runtime.configure_process(opt.preprocess)
    model = create_model(opt, runtime)
    want_maps = opt.similarity_maps and opt.sim_num > 0
    if want_maps and not hasattr(model, 'nce_layers'):
        raise SystemExit(f'error: --similarity_maps needs a model with patch features (cut, src_hdce, '
                         f'sin_src_hdce), not --model {opt.model}')
    web_dir = os.path.join(opt.results_dir, opt.name, f'{opt.phase}_{opt.epoch}')
    try:
        util.mkdirs(web_dir)
    except OSError as exc:
        raise SystemExit(f'error: cannot create --results_dir folder {web_dir}: {exc}') from exc
    webpage = HTML(web_dir, f'Experiment = {opt.name}, Phase = {opt.phase}, Epoch = {opt.epoch}')

    n_total = int(min(len(dataset), opt.num_test))
    start = time.time()
    n_done = 0
    map_inputs = []  # (image name, input tensor) for the similarity maps
    sources = set()  # source images translated (an unaligned split repeats the smaller domain's)
    for i, data in enumerate(tqdm(dataset, total=n_total, desc='test', unit='img', file=sys.stdout)):
        if i == 0:
            model.data_dependent_initialize(data)
            model.setup(opt)
            model.parallelize()
            if opt.eval:
                model.eval()
        if i >= opt.num_test:
            break
        model.set_input(data)
        model.test()
        save_images(webpage, model.get_current_visuals(), model.get_image_paths(), width=opt.display_winsize)
        sources.update(map(str, model.get_image_paths()))
        if want_maps and len(map_inputs) < opt.sim_num:
            name = os.path.splitext(os.path.basename(model.get_image_paths()[0]))[0]
            map_inputs.append((name, model.real_A.detach().clone()))
        n_done += 1
    elapsed = time.time() - start
    maps = add_similarity_maps(webpage, model, opt, map_inputs) if map_inputs else None
    webpage.save()
    summary = {
        'name': opt.name, 'model': opt.model, 'epoch': opt.epoch, 'phase': opt.phase,
        'dataroot': opt.dataroot, 'direction': opt.direction, 'num_images': n_done, 'num_test': opt.num_test,
        'num_source_images': len(sources), 'test_set_images': test_set_images(dataset, opt),
        'seconds': round(elapsed, 3), 'seconds_per_image': round(elapsed / max(n_done, 1), 4),
        'web_dir': os.path.abspath(web_dir), 'images_dir': os.path.abspath(os.path.join(web_dir, 'images')),
    }
    if maps is not None:
        summary['similarity_maps'] = maps
    util.atomic_write_json(os.path.join(web_dir, 'results.json'), summary)
    print(f'{n_done} images translated; results in {os.path.join(web_dir, "index.html")}')
    if summary['num_source_images'] < summary['test_set_images']:
        print(f'note: {summary["num_source_images"]} of the {summary["test_set_images"]} test images translated '
              f'(--num_test {opt.num_test}); FID and the Cityscapes scores refuse this folder: pass --num_test '
              f'{summary["test_set_images"]} to score the whole test set, as the paper does', file=sys.stderr)
    return summary


def main(argv=None):
    """Returns the exit status (4: disk full); deliberate errors propagate (one line at the command line). A run
    that fails leaves none of the folders it made (results, or the checkpoint folder of a mistyped --name)."""
    options = TestOptions(argv)
    opt = options.parse(save=False)
    try:
        with contextlib.ExitStack() as made:
            made.enter_context(run_folder.removed_on_failure(os.path.join(opt.results_dir, opt.name)))
            made.enter_context(run_folder.removed_on_failure(os.path.join(opt.checkpoints_dir, opt.name)))
            options.save_options(opt)
            run_test(opt)
    except (OSError, RuntimeError) as exc:
        full = errors.disk_full(exc, os.path.join(opt.results_dir, opt.name))
        if full is None:
            raise
        print(f'error: {full}', file=sys.stderr)
        return full.exit_code
    return 0


if __name__ == '__main__':
    sys.exit(errors.guard(main))
