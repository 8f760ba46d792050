"""Translate the test split with a trained generator (CUT's command line).

    python test.py --dataroot ./datasets/horse2zebra --name h2z --model src_hdce --epoch latest

Writes <results_dir>/<name>/<phase>_<epoch>/images/{real_A,fake_B,real_B}/<image>.png, an index.html
and results.json (counts, timing, where the images are).
"""
import os
import sys
import time

from tqdm import tqdm

from data import create_dataset
from models import create_model
from options.test_options import TestOptions
from util import util
from util.html import HTML
from util.visualizer import save_images


def run_test(opt):
    # CUT's test-time settings: one image at a time, in order, no augmentation, no visdom
    opt.num_threads = 0
    opt.batch_size = 1
    opt.serial_batches = True
    opt.no_flip = True
    opt.display_id = -1
    dataset = create_dataset(opt)
    model = create_model(opt)
    web_dir = os.path.join(opt.results_dir, opt.name, f'{opt.phase}_{opt.epoch}')
    try:
        util.mkdirs(web_dir)
    except OSError as exc:
        raise SystemExit(f'error: cannot create --results_dir folder {web_dir}: {exc}') from exc
    webpage = HTML(web_dir, f'Experiment = {opt.name}, Phase = {opt.phase}, Epoch = {opt.epoch}')

    n_total = int(min(len(dataset), opt.num_test))
    start = time.time()
    n_done = 0
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
        n_done += 1
    webpage.save()
    elapsed = time.time() - start
    summary = {
        'name': opt.name, 'model': opt.model, 'epoch': opt.epoch, 'phase': opt.phase,
        'dataroot': opt.dataroot, 'direction': opt.direction, 'num_images': n_done,
        'seconds': round(elapsed, 3), 'seconds_per_image': round(elapsed / max(n_done, 1), 4),
        'web_dir': os.path.abspath(web_dir), 'images_dir': os.path.abspath(os.path.join(web_dir, 'images')),
    }
    util.atomic_write_json(os.path.join(web_dir, 'results.json'), summary)
    print(f'{n_done} images translated; results in {os.path.join(web_dir, "index.html")}')
    return summary


def main(argv=None):
    opt = TestOptions(argv).parse()
    run_test(opt)
    return 0


if __name__ == '__main__':
    sys.exit(main())
