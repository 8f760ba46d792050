"""evaluation/drn.py's DRN-D-105 and evaluation/miou.py: gan-compression's Cityscapes mIoU (Table 3)."""
import json

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from evaluation import miou
from evaluation.common import EvaluationError
from evaluation.drn import CITYSCAPES_MEAN, CITYSCAPES_STD, DRNSeg, load_drn_weights


def official_d105_shapes():
    """Key -> shape of fyu/drn's DRNSeg('drn_d_105', 19) (the layout of drn-d-105_ms_cityscapes.pth), written
    out from its definition: DRN(Bottleneck, [1, 1, 3, 4, 23, 3, 1, 1], arch='D') without avgpool and fc."""
    shapes = {}

    def bn(prefix, c):
        for leaf in ('weight', 'bias', 'running_mean', 'running_var'):
            shapes[f'{prefix}.{leaf}'] = (c,)
        shapes[f'{prefix}.num_batches_tracked'] = ()

    def conv_layer(i, c_in, c_out, k=3):  # _make_conv_layers with one convolution
        shapes[f'base.{i}.0.weight'] = (c_out, c_in, k, k)
        bn(f'base.{i}.1', c_out)

    conv_layer(0, 3, 16, 7)
    conv_layer(1, 16, 16)
    conv_layer(2, 16, 32)
    inplanes = 32
    for i, (planes, blocks) in zip(range(3, 7), ((64, 3), (128, 4), (256, 23), (512, 3))):
        for j in range(blocks):
            p = f'base.{i}.{j}'
            shapes[f'{p}.conv1.weight'] = (planes, inplanes, 1, 1)
            bn(f'{p}.bn1', planes)
            shapes[f'{p}.conv2.weight'] = (planes, planes, 3, 3)
            bn(f'{p}.bn2', planes)
            shapes[f'{p}.conv3.weight'] = (4 * planes, planes, 1, 1)
            bn(f'{p}.bn3', 4 * planes)
            if j == 0:
                shapes[f'{p}.downsample.0.weight'] = (4 * planes, inplanes, 1, 1)
                bn(f'{p}.downsample.1', 4 * planes)
            inplanes = 4 * planes
    conv_layer(7, 2048, 512)
    conv_layer(8, 512, 512)
    shapes.update({'seg.weight': (19, 512, 1, 1), 'seg.bias': (19,), 'up.weight': (19, 1, 16, 16)})
    return shapes


@pytest.fixture(scope='module')
def d105():
    torch.manual_seed(0)
    return DRNSeg(arch='drn_d_105').eval()


def test_drn_d_105_has_the_official_layout(d105):
    state = d105.state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == official_d105_shapes()
    assert len(state) == 651
    with torch.no_grad():
        assert d105(torch.randn(1, 3, 32, 48)).shape == (1, 19, 32, 48)
    # dilations replace striding after layer4: output stride 8, as DRN-D-22
    dilations = [m.dilation[0] for m in d105.base[5].modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert set(dilations) == {2} and d105.base[6][0].conv2.dilation == (4, 4) and d105.base[7][0].dilation == (2, 2)


def test_a_file_with_the_official_keys_loads_strictly(tmp_path):
    g = torch.Generator().manual_seed(1)
    official = {k: (torch.randint(0, 9, s, generator=g) if k.endswith('num_batches_tracked')
                    else torch.randn(s, generator=g)) for k, s in official_d105_shapes().items()}
    legacy = {k: v for k, v in official.items() if not k.endswith('num_batches_tracked')}  # PyTorch < 0.4 file
    torch.save(legacy, tmp_path / 'drn-d-105_ms_cityscapes.pth')
    loaded = load_drn_weights(DRNSeg(arch='drn_d_105'), tmp_path / 'drn-d-105_ms_cityscapes.pth').state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in legacy.items())

    torch.save(DRNSeg().state_dict(), tmp_path / 'drn_d_22_cityscapes.pth')
    with pytest.raises(EvaluationError, match=r"not a DRN-D-105 .*missing \['base.3.0.bn3.bias'"):
        load_drn_weights(DRNSeg(arch='drn_d_105'), tmp_path / 'drn_d_22_cityscapes.pth')
    with pytest.raises(EvaluationError, match='download drn-d-105_ms_cityscapes.pth'):
        load_drn_weights(DRNSeg(arch='drn_d_105'), tmp_path / 'absent.pth')
    with pytest.raises(ValueError, match='drn_d_22, drn_d_105'):
        DRNSeg(arch='drn_d_38')


def test_upsampling_is_gan_compressions_pil_bilinear_resize():
    """gan-compression resizes each class map with PIL's BILINEAR (resize_4d_tensor); F.interpolate with
    align_corners=False computes the same values."""
    scores = torch.randn(1, 3, 8, 16, generator=torch.Generator().manual_seed(2))
    ours = F.interpolate(scores, size=(32, 128), mode='bilinear', align_corners=False)
    for c in range(3):
        pil = np.asarray(Image.fromarray(scores[0, c].numpy()).resize((128, 32), Image.BILINEAR))
        np.testing.assert_allclose(ours[0, c].numpy(), pil, atol=1e-5)


# ---- constructed data sets -------------------------------------------------------------------------------

def write_set(root, photos, labels, names=None):
    """test.py-like fake_B/<name>.png photos, gtFine trainIds labels and the mapping table of both."""
    names = names or [str(i) for i in range(len(photos))]
    (root / 'results' / 'images' / 'fake_B').mkdir(parents=True)
    (root / 'cityscapes' / 'gtFine' / 'val' / 'city').mkdir(parents=True)
    lines = []
    for i, (name, photo, label) in enumerate(zip(names, photos, labels)):
        Image.fromarray(photo).save(root / 'results' / 'images' / 'fake_B' / f'{name}.png')
        key = f'city_{i:06d}_000019'
        label_rel = f'gtFine/val/city/{key}_gtFine_trainIds.png'
        Image.fromarray(label.astype(np.uint8)).save(root / 'cityscapes' / label_rel)
        lines.append(f'{i} {label_rel} leftImg8bit/val/city/{key}_leftImg8bit.png')
    (root / 'val_table.txt').write_text('\n'.join(lines) + '\n')
    return root / 'results', root / 'val_table.txt', root / 'cityscapes'


class RedToClass(nn.Module):
    """A segmenter for constructed photos: class c where the red channel is 10·c (scores −(red − 10c)²)."""

    def forward(self, x):
        red = (x[:, :1] * CITYSCAPES_STD[0] + CITYSCAPES_MEAN[0]) * 255  # undo the Cityscapes standardisation
        centres = 10.0 * torch.arange(19, dtype=x.dtype).view(1, 19, 1, 1)
        return -(red - centres) ** 2  # (B, 19, H, W)


def uniform_photo(cls, size=8):
    photo = np.zeros((size, size, 3), dtype=np.uint8)
    photo[..., 0] = 10 * cls
    return photo


def test_a_known_confusion_gives_the_hand_computed_miou(tmp_path):
    """Photo 1 is predicted road (0) everywhere, photo 2 sidewalk (1); labels at 4x4:
    label 1 = 8 px road, 4 px sidewalk, 4 px ignore; label 2 = 8 px sidewalk, 8 px building (2).
    C[0,0] = 8, C[1,0] = 4, C[1,1] = 8, C[2,1] = 8 over the whole set:
    IoU road 8/12, sidewalk 8/20, building 0/8, the other 16 classes absent -> mIoU 100·(2/3 + 2/5 + 0)/3."""
    label1 = np.array([[0, 0, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1], [255, 255, 255, 255]])
    label2 = np.array([[1, 1, 1, 1], [1, 1, 1, 1], [2, 2, 2, 2], [2, 2, 2, 2]])
    results, table, root = write_set(tmp_path, [uniform_photo(0), uniform_photo(1)], [label1, label2])
    result = miou.evaluate_miou(results / 'images' / 'fake_B', table, root, RedToClass())
    expected_cm = np.zeros((19, 19), dtype=int)
    expected_cm[0, 0], expected_cm[1, 0], expected_cm[1, 1], expected_cm[2, 1] = 8, 4, 8, 8
    np.testing.assert_array_equal(result['confusion_matrix'], expected_cm)
    assert result['metrics']['mIoU'] == pytest.approx(100 * (2 / 3 + 2 / 5 + 0) / 3)  # 35.56
    iou = result['metrics']['per_class_iou']
    assert iou['road'] == pytest.approx(200 / 3) and iou['building'] == 0 and iou['car'] is None
    assert result['num_images'] == 2 and result['label_sizes'] == [[4, 4]]


@pytest.mark.slow
def test_a_perfect_prediction_scores_100_through_the_cli(d105, tmp_path, capsys):
    """Random DRN-D-105 weights; the labels are its own predictions upsampled to 32x64 (2:1, as the Cityscapes
    frames), plus ignored pixels."""
    rng = np.random.default_rng(3)
    photos = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(2)]
    labels = list(miou.predict_full_size(d105, photos, (32, 64), 'cpu'))
    assert all(len(np.unique(label)) >= 3 for label in labels)  # several classes, boundaries to upsample
    labels[0][:4] = 255
    results, table, root = write_set(tmp_path, photos, labels, names=['city_000000_000019_leftImg8bit', '1'])
    weights = tmp_path / 'drn-d-105_ms_cityscapes.pth'
    torch.save(d105.state_dict(), weights)
    miou.main([str(results), '--table', str(table), '--cityscapes-root', str(root), '--drn-weights', str(weights),
               '--device', 'cpu', '--batch-size', '2', '--expect-count', '2'])
    result = json.loads((results / 'metrics_miou.json').read_text())
    assert result['metrics']['mIoU'] == pytest.approx(100.0)
    assert result['num_images'] == 2 and result['label_sizes'] == [[32, 64]] and result['kind'] == 'cityscapes_miou'
    assert json.loads(capsys.readouterr().out)['metrics'] == result['metrics']


def test_table_matching_and_label_errors_are_named(tmp_path):
    table = [('0', 'gtFine/val/a/a_0_gtFine_trainIds.png', 'leftImg8bit/val/a/a_0_leftImg8bit.png'),
             ('1', 'gtFine/val/b/b_1_gtFine_trainIds.png', 'leftImg8bit/val/b/b_1_leftImg8bit.png')]
    assert miou.match_labels(['1', 'a_0_leftImg8bit'], table) == [table[1][1], table[0][1]]
    with pytest.raises(EvaluationError, match="'7' has no line"):
        miou.match_labels(['7'], table)
    (tmp_path / 'bad_table.txt').write_text('0 only_two_fields\n')
    with pytest.raises(EvaluationError, match='bad_table.txt:1'):
        miou.read_table(tmp_path / 'bad_table.txt')
    with pytest.raises(EvaluationError, match='--aligned --tables'):
        miou.read_table(tmp_path / 'absent.txt')

    Image.fromarray(np.full((4, 4), 26, dtype=np.uint8)).save(tmp_path / 'x_gtFine_labelIds.png')
    with pytest.raises(EvaluationError, match='labelIds'):
        miou.read_train_ids(tmp_path / 'x_gtFine_labelIds.png')
    Image.fromarray(np.zeros((4, 4, 3), dtype=np.uint8)).save(tmp_path / 'x_gtFine_color.png')
    with pytest.raises(EvaluationError, match='3 channels'):
        miou.read_train_ids(tmp_path / 'x_gtFine_color.png')
    with pytest.raises(EvaluationError, match='--trainIds'):
        miou.read_train_ids(tmp_path / 'absent.png')


# ---- datasets/prepare_cityscapes_dataset.py --aligned --tables --trainIds, then the mIoU ---------------------

def cityscapes_release(root):
    """gtFine/val and leftImg8bit/val as the release unpacks (8x4 images, *_labelIds only), 3 images in 2 cities;
    label ids: road (7); sidewalk (8) over static (4, ignored); car (26) beside person (24)."""
    road, sidewalk, static, car, person = 7, 8, 4, 26, 24
    ids = [np.full((4, 8), road), np.array([[sidewalk] * 8] * 2 + [[static] * 8] * 2),
           np.array([[car] * 4 + [person] * 4] * 4)]
    keys = ['aachen_000000_000019', 'aachen_000001_000019', 'bonn_000000_000019']
    for key, label in zip(keys, ids):
        city = key.split('_')[0]
        for kind, suffix, image in (('gtFine', '_gtFine_labelIds.png', Image.fromarray(label.astype(np.uint8))),
                                    ('gtFine', '_gtFine_color.png', Image.new('RGB', (8, 4), (128, 64, 128))),
                                    ('leftImg8bit', '_leftImg8bit.png', Image.new('RGB', (8, 4), (90, 90, 90)))):
            folder = root / kind / 'val' / city
            folder.mkdir(parents=True, exist_ok=True)
            image.save(folder / f'{key}{suffix}')
    return root, keys


def test_prepared_tables_and_train_ids_give_the_hand_computed_miou(tmp_path, capsys):
    from tests.conftest import load_script
    prepare = load_script('datasets/prepare_cityscapes_dataset.py')
    root, keys = cityscapes_release(tmp_path / 'cityscapes-origin')
    out = tmp_path / 'database' / 'cityscapes'
    assert prepare.main(['--gtFine_dir', str(root / 'gtFine'), '--leftImg8bit_dir', str(root / 'leftImg8bit'),
                         '--output_dir', str(out), '--splits', 'val', '--size', '8x8', '--aligned', '--tables',
                         '--trainIds']) == 0
    assert sorted(p.name for p in (out / 'val').iterdir()) == ['0.jpg', '1.jpg', '2.jpg']
    with Image.open(out / 'val' / '0.jpg') as pair:
        assert pair.size == (16, 8)
        left, right = np.asarray(pair)[:, :8].astype(int), np.asarray(pair)[:, 8:].astype(int)
    assert np.abs(left - 90).max() <= 2 and np.abs(right - [128, 64, 128]).max() <= 2  # photo (A) | label map (B)
    city = [k.split('_')[0] for k in keys]
    assert (out / 'val_table.txt').read_text().splitlines() == [
        f'{i} gtFine/val/{c}/{k}_gtFine_trainIds.png leftImg8bit/val/{c}/{k}_leftImg8bit.png'
        for i, (c, k) in enumerate(zip(city, keys))]
    train_ids = np.asarray(Image.open(root / 'gtFine' / 'val' / 'aachen' / f'{keys[1]}_gtFine_trainIds.png'))
    assert train_ids[0, 0] == 1 and train_ids[3, 0] == 255  # sidewalk, static ignored
    assert prepare.label_ids_to_train_ids(np.array([[7, 26, 24, 33, 0, 9]])).tolist() == [[0, 13, 11, 18, 255, 255]]

    # predictions road, sidewalk, car (RedToClass): C[0,0] = 32, C[1,1] = 16, C[13,13] = 16, C[11,13] = 16
    fakes = tmp_path / 'results' / 'fake_B'
    fakes.mkdir(parents=True)
    for name, cls in (('0', 0), ('1', 1), ('2', 13)):
        Image.fromarray(uniform_photo(cls)).save(fakes / f'{name}.png')
    result = miou.evaluate_miou(fakes, out / 'val_table.txt', root, RedToClass())
    assert result['metrics']['mIoU'] == pytest.approx(100 * (1 + 1 + 0.5 + 0) / 4)  # 62.5
    assert result['label_sizes'] == [[4, 8]]

    capsys.readouterr()
    with pytest.raises(SystemExit):
        prepare.main(['--gtFine_dir', str(root / 'gtFine'), '--leftImg8bit_dir', str(root / 'leftImg8bit'),
                      '--output_dir', str(tmp_path / 'other'), '--splits', 'val', '--tables'])
    assert '--aligned' in capsys.readouterr().err


def test_a_partial_test_py_folder_is_refused_before_the_weights(tmp_path):
    """test.py's count record says 50 of 60 test labels were translated: the mIoU is not computed (Table 3 scores
    every validation image), and the message names both counts; --allow-partial goes on to the weights."""
    results = tmp_path / 'results' / 'city' / 'test_latest'
    (results / 'images' / 'fake_B').mkdir(parents=True)
    (results / 'results.json').write_text(json.dumps({'num_test': 50, 'num_source_images': 50,
                                                      'test_set_images': 60}))
    argv = [str(results), '--table', str(tmp_path / 'val_table.txt'), '--cityscapes-root', str(tmp_path),
            '--drn-weights', str(tmp_path / 'missing.pth')]
    with pytest.raises(EvaluationError, match='translations of 50 of the 60 test images'):
        miou.main(argv)
    with pytest.raises(Exception) as later:
        miou.main(argv + ['--allow-partial'])
    assert 'translations of 50 of the 60' not in str(later.value)
