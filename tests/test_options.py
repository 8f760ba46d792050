"""Options are final after parsing: what train.py / test.py run with is what their *_opt.json say; test.py
takes the architecture from the run's train_opt.json; CUT's dead flags are accepted and hidden."""
import json

import pytest

import test as test_script
import train as train_script
from datasets.make_synthetic_dataset import make_synthetic_dataset
from options import test_options
from options.train_options import TrainOptions
from tests.conftest import H2Z, SMALL_TRAIN


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """A run trained for one epoch of 3 images with non-default architecture flags."""
    root = tmp_path_factory.mktemp('opts')
    make_synthetic_dataset(root / 'data', n_train=3, n_test=2, size=32, seed=2)
    argv = ['--dataroot', str(root / 'data'), '--checkpoints_dir', str(root / 'ckpt'), '--name', 'run',
            *H2Z, *SMALL_TRAIN, '--nce_layers', '0,4,8', '--netF_nc', '32', '--n_epochs', '1', '--n_epochs_decay', '0',
            '--seed', '1', '--G_output', 'residual']
    opt = TrainOptions(argv).parse()
    before = dict(vars(opt))
    assert train_script.train(opt) == 0
    assert vars(opt) == before  # train.py keeps run-time facts (device, seed, epoch_count) out of opt
    return root


def test_test_py_rebuilds_the_trained_architecture(trained, capsys):
    base = ['--dataroot', str(trained / 'data'), '--checkpoints_dir', str(trained / 'ckpt'), '--name', 'run',
            '--results_dir', str(trained / 'results'), '--gpu_ids', '-1', '--load_size', '32', '--crop_size', '32']
    summary = test_script.run_test(test_options.TestOptions(base + ['--num_test', '1']).parse())
    assert summary['num_images'] == 1 and summary['model'] == 'src_hdce'
    saved = json.loads((trained / 'ckpt' / 'run' / 'test_opt.json').read_text())
    assert (saved['model'], saved['netG'], saved['ngf'], saved['nce_layers'], saved['netF_nc'], saved['G_output']) == \
        ('src_hdce', 'resnet_6blocks', 4, '0,4,8', 32, 'residual')
    # the settings test.py runs with are those it saved
    assert (saved['batch_size'], saved['num_threads'], saved['serial_batches'], saved['no_flip']) == (1, 0, True, True)
    capsys.readouterr()
    opt = test_options.TestOptions(base + ['--ngf', '8']).parse()
    assert opt.ngf == 8 and opt.netG == 'resnet_6blocks'  # the command line wins, and says so
    assert 'note: --ngf 8 from the command line; the run was trained with --ngf 4' in capsys.readouterr().out
    with pytest.raises(RuntimeError, match='does not fit netG'):
        test_script.run_test(opt)


def test_a_run_without_train_opt_json_uses_the_defaults(tmp_path):
    opt = test_options.TestOptions(['--dataroot', str(tmp_path), '--checkpoints_dir', str(tmp_path),
                                    '--name', 'official', '--gpu_ids', '-1']).parse()
    assert (opt.model, opt.netG, opt.ngf) == ('cut', 'resnet_9blocks', 64)


def test_a_broken_train_opt_json_names_the_file(tmp_path):
    (tmp_path / 'run').mkdir()
    (tmp_path / 'run' / 'train_opt.json').write_text('{not json')
    with pytest.raises(SystemExit, match='train_opt.json'):
        test_options.TestOptions(['--dataroot', str(tmp_path), '--checkpoints_dir', str(tmp_path),
                                  '--name', 'run']).parse()


def test_plateau_is_refused_and_cuts_dead_flags_are_hidden(tmp_path, capsys):
    common = ['--dataroot', str(tmp_path), '--checkpoints_dir', str(tmp_path), '--gpu_ids', '-1']
    with pytest.raises(SystemExit, match='--lr_policy plateau needs a validation metric'):
        TrainOptions(common + ['--lr_policy', 'plateau']).parse()
    opt = TrainOptions(common + ['--evaluation_freq', '10', '--easy_label', 'x']).parse()
    assert opt.evaluation_freq == 10
    with pytest.raises(SystemExit):
        TrainOptions(common + ['--help']).parse()
    shown = capsys.readouterr().out
    assert '--lr_policy' in shown and '--evaluation_freq' not in shown and '--easy_label' not in shown


def test_builders_take_only_what_their_signature_names():
    from models.networks import define_D, define_G
    from models.networks.registry import GENERATORS, build
    net = define_G(3, 3, 4, 'stylegan2', norm='instance', no_antialias=True, crop_size=32)  # norm does not apply
    assert net.keeps_own_init
    assert define_D(3, 4, 'pixel', n_layers_D=5, crop_size=64) is not None
    with pytest.raises(TypeError):
        define_G(3, 3, 4, 'resnet_6blocks', not_an_option=1)
    with pytest.raises(TypeError):
        build(GENERATORS, 'generator', 'resnet_6blocks', input_nc=3, output_nc=3)  # ngf missing


def test_one_generator_flag_set_for_training_and_the_copy_floor(tmp_path):
    """train.py's options and evaluation/copy_floor.py read the generator flags from one declaration, and
    generator_from_options builds the same network from a namespace, its dict, or with an override."""
    import torch
    from evaluation.copy_floor import generator_parser
    from models.networks import generator_from_options
    flags = ['--netG', 'resnet_6blocks', '--ngf', '4', '--no_antialias', '--G_output', 'residual', '--init_gain', '0.5']
    opt = TrainOptions(['--dataroot', str(tmp_path), '--checkpoints_dir', str(tmp_path), '--gpu_ids', '-1',
                        '--crop_size', '32', '--load_size', '32', *flags]).parse()
    floor = vars(generator_parser().parse_args(flags))
    assert floor and all(floor[k] == getattr(opt, k) for k in floor)
    torch.manual_seed(0)
    from_namespace = generator_from_options(opt)
    torch.manual_seed(0)
    from_dict = generator_from_options(dict(vars(opt)))
    assert from_namespace.state_dict().keys() == from_dict.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(from_namespace.state_dict().values(), from_dict.state_dict().values()))
    assert generator_from_options(opt, output_nc=1, G_output='tanh')(torch.zeros(1, 3, 32, 32)).shape[1] == 1
    with pytest.raises(ValueError, match='ngf'):
        generator_from_options({k: v for k, v in vars(opt).items() if k != 'ngf'})
