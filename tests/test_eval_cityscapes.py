"""Tests for evaluation/drn.py and evaluation/cityscapes.py: DRN-D-22 layout, score arithmetic, get_Acc.py parity."""
import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from evaluation import cityscapes as cs
from evaluation.common import EvaluationError
from evaluation.drn import CITYSCAPES_MEAN, CITYSCAPES_STD, DRNSeg, bilinear_upsampling_kernel, load_drn_weights

# Key names and shapes of fyu/drn DRNSeg('drn_d_22', 19), the layout of drn_d_22_cityscapes.pth.
EXPECTED_SHAPES = {
    'base.0.0.weight': (16, 3, 7, 7), 'base.0.1.running_var': (16,),
    'base.1.0.weight': (16, 16, 3, 3), 'base.2.0.weight': (32, 16, 3, 3),
    'base.3.0.conv1.weight': (64, 32, 3, 3), 'base.3.0.downsample.0.weight': (64, 32, 1, 1),
    'base.3.1.bn2.bias': (64,), 'base.4.0.downsample.1.running_mean': (128,),
    'base.5.0.conv1.weight': (256, 128, 3, 3), 'base.6.1.conv2.weight': (512, 512, 3, 3),
    'base.7.0.weight': (512, 512, 3, 3), 'base.8.1.weight': (512,),
    'seg.weight': (19, 512, 1, 1), 'seg.bias': (19,), 'up.weight': (19, 1, 16, 16),
}


@pytest.fixture(scope='module')
def drn():
    torch.manual_seed(0)
    return DRNSeg().eval()


def test_drn_forward_shape_and_key_names(drn):
    with torch.no_grad():
        assert drn(torch.randn(1, 3, 128, 256)).shape == (1, 19, 128, 256)
    state = drn.state_dict()
    assert {k: tuple(state[k].shape) for k in EXPECTED_SHAPES} == EXPECTED_SHAPES
    assert {k.split('.')[0] for k in state} == {'base', 'seg', 'up'}
    assert sorted({k.split('.')[1] for k in state if k.startswith('base.')}) == [str(i) for i in range(9)]
    assert len(state) == 153 and not drn.up.weight.requires_grad


def test_up_is_bilinear_x8():
    kernel = bilinear_upsampling_kernel(8)
    assert kernel.shape == (16, 16) and torch.allclose(kernel, kernel.T)
    up = nn.ConvTranspose2d(1, 1, 16, stride=8, padding=4, bias=False)
    up.weight.data[:] = kernel
    out = up(torch.ones(1, 1, 4, 4))  # (1, 1, 32, 32)
    assert torch.allclose(out[..., 4:-4, 4:-4], torch.ones(1, 1, 24, 24))


def test_pretrained_formats_load_strictly(drn, tmp_path):
    reference = drn.state_dict()
    wrapped = {'epoch': 1, 'state_dict': {f'module.{k}': v for k, v in reference.items()}}
    legacy = {k: v for k, v in reference.items() if not k.endswith('num_batches_tracked')}
    for name, content in (('checkpoint.pth.tar', wrapped), ('drn_d_22_cityscapes.pth', legacy)):
        torch.save(content, tmp_path / name)
        loaded = load_drn_weights(DRNSeg(), tmp_path / name).state_dict()
        assert all(torch.equal(loaded[k], v) for k, v in reference.items() if 'num_batches' not in k)

    torch.save({k: v for k, v in reference.items() if not k.startswith('seg.')}, tmp_path / 'no_seg.pth')
    with pytest.raises(EvaluationError, match=r"no_seg.pth.*missing \['seg.bias', 'seg.weight'\]"):
        load_drn_weights(DRNSeg(), tmp_path / 'no_seg.pth')
    with pytest.raises(EvaluationError, match='drn_d_22_cityscapes.pth'):
        load_drn_weights(DRNSeg(), tmp_path / 'absent.pth')


def test_colors_map_to_nearest_palette_class():
    colors = np.array([[[128, 64, 128], [0, 0, 142], [0, 0, 0], [130, 60, 125], [5, 3, 4], [0, 0, 135]]])
    assert cs.colors_to_ids(colors).tolist() == [[0, 13, cs.IGNORE_ID, 0, cs.IGNORE_ID, 13]]


@pytest.mark.parametrize('label, pred, expected', [
    # (label 0 → 0), (0 → 1), (1 → 1) twice, (2 → 0), one ignore pixel.
    ([[0, 0, 1], [1, 2, 19]], [[0, 1, 1], [1, 0, 2]],
     {'mAP': 100 * (1 / 3 + 2 / 3 + 0) / 3, 'pixAcc': 60.0, 'classAcc': 100 * (1 / 2 + 1 + 0) / 3}),
    # A class predicted but absent from the labels (3) counts in mAP with IoU 0, not in classAcc.
    ([[0, 0, 1, 0]], [[0, 1, 1, 3]],
     {'mAP': 100 * (1 / 3 + 1 / 2 + 0) / 3, 'pixAcc': 50.0, 'classAcc': 100 * (1 / 3 + 1) / 2}),
])
def test_scores_from_confusion_matrix(label, pred, expected):
    cm = cs.confusion_matrix(np.array(label), np.array(pred))
    assert cm.sum() == np.sum(np.array(label) < 19)
    scores = cs.segmentation_scores(cm)
    assert {k: scores[k] for k in expected} == pytest.approx(expected)
    assert scores['per_class_iou']['truck'] is None


def _get_acc_by_loops(label_rgb, pred_ids):
    """get_Acc.py's steps written out: BGR images against the RGB palette, 19x19 loops, 128*256*500."""
    label, pred = label_rgb[:, :, ::-1].astype(np.int64), cs.PALETTE[pred_ids][:, :, ::-1]
    label_dis = np.stack([np.abs(label - tuple(c)).sum(2) for c in cs.PALETTE])
    pred_dis = np.stack([np.abs(pred - tuple(c)).sum(2) for c in cs.PALETTE])
    label_id, pred_id = np.argmin(label_dis, axis=0), np.argmin(pred_dis, axis=0)
    cm = np.zeros((19, 19))
    for j in range(19):
        for k in range(19):
            cm[j, k] += np.sum(pred_id[label_id == j] == k)
    pix = sum(cm[i, i] for i in range(19)) / (128 * 256 * 500)
    cls = sum(cm[i, i] / (cm[i].sum() + 1e-12) for i in range(19)) / 19
    iou = sum(cm[i, i] / (cm[i].sum() + cm[:, i].sum() - cm[i, i] + 1e-6) for i in range(19)) / 19
    return {'pixAcc': 100 * pix, 'classAcc': 100 * cls, 'mIoU': 100 * iou}


def test_official_get_acc_matches_its_arithmetic():
    rng = np.random.default_rng(0)
    label_ids = rng.integers(0, 20, size=(16, 32))
    label_rgb = np.clip(cs.PALETTE[label_ids] + rng.integers(-6, 7, size=(16, 32, 3)), 0, 255).astype(np.uint8)
    pred_ids = np.where(rng.random((16, 32)) < 0.7, np.minimum(label_ids, 18), rng.integers(0, 19, (16, 32)))
    ours = cs.official_get_acc_scores(cs.official_confusion_matrix(label_rgb, pred_ids))
    assert ours == pytest.approx(_get_acc_by_loops(label_rgb, pred_ids), rel=1e-12)


def test_official_mapping_collapses_classes():
    """BGR-read palette colours land on 13 classes, and truck on ignore: 19 classes become 14 ids."""
    ids = cs.colors_to_ids(cs.PALETTE[None, :19, ::-1])[0]
    assert ids[3] == 0 and ids[6] == ids[7] == 10 and ids[14] == cs.IGNORE_ID
    assert len(set(ids.tolist())) == 14


def test_perfect_prediction_default_vs_get_acc():
    """The numbers quoted in docs/evaluation.md: 19 classes x 12 columns + 28 ignore columns, 500 times."""
    label_ids = np.repeat(np.r_[np.repeat(np.arange(19), 12), np.full(28, 19)][None], 128, axis=0)  # (128, 256)
    pred_ids = np.where(label_ids == 19, 0, label_ids)
    label_rgb = cs.PALETTE[label_ids].astype(np.uint8)
    correct = cs.segmentation_scores(500 * cs.confusion_matrix(cs.colors_to_ids(label_rgb), pred_ids))
    official = cs.official_get_acc_scores(500 * cs.official_confusion_matrix(label_rgb, pred_ids))
    assert (correct['mAP'], correct['pixAcc'], correct['classAcc']) == (100.0, 100.0, 100.0)
    assert official['pixAcc'] == pytest.approx(100 * 228 / 256 * 18 / 19)  # 84.38
    assert official['classAcc'] == pytest.approx(100 * 13 / 19, abs=1e-6)  # 68.42
    one_image = cs.official_get_acc_scores(cs.official_confusion_matrix(label_rgb, pred_ids))
    assert one_image['pixAcc'] == pytest.approx(84.375 / 500)


def test_cv2_nearest_rule():
    image = np.arange(8 * 6).reshape(8, 6, 1)
    out = cs.cv2_nearest_resize(image, (3, 4))  # (width, height)
    assert out[:, :, 0].tolist() == image[[0, 2, 4, 6]][:, [0, 2, 4], 0].tolist()


class OracleDRN(nn.Module):
    """Stands in for DRN: predicts the palette class nearest to each (de-normalised) input colour."""

    def forward(self, x):
        mean = torch.tensor(CITYSCAPES_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(CITYSCAPES_STD).view(1, 3, 1, 1)
        rgb = ((x * std + mean) * 255).round().permute(0, 2, 3, 1).numpy()
        ids = np.stack([np.minimum(cs.colors_to_ids(image), 18) for image in rgb])
        return torch.nn.functional.one_hot(torch.from_numpy(ids), 19).permute(0, 3, 1, 2).float()


def _result_folder(root, classes, *, label_ext='png'):
    """A test.py-style folder whose photos are flat label colours, so the oracle segments them perfectly."""
    for kind in ('fake_B', 'real_A'):
        (root / 'images' / kind).mkdir(parents=True, exist_ok=True)
    for i, c in enumerate(classes):
        flat = np.full((256, 256, 3), cs.PALETTE[c], dtype=np.uint8)
        Image.fromarray(flat).save(root / 'images' / 'fake_B' / f'{i}_B.png')
        Image.fromarray(flat).save(root / 'images' / 'real_A' / f'{i}_B.{label_ext}')
    return root


def test_pairs_by_name_and_scores_perfect_oracle(tmp_path):
    folder = _result_folder(tmp_path / 'test_latest', [0, 13, 10, 2, 8], label_ext='png')
    (folder / 'images' / 'real_A' / '3_B.png').rename(folder / 'images' / 'real_A' / '3_B.bmp')
    pairs = cs.paired_files(folder / 'images' / 'fake_B', folder / 'images' / 'real_A')
    assert [(name, f.name, l.name) for name, f, l in pairs][3] == ('3_B', '3_B.png', '3_B.bmp')
    result = cs.evaluate_cityscapes(folder / 'images' / 'fake_B', folder / 'images' / 'real_A', OracleDRN(),
                                    batch_size=2, official=True)
    assert (result['metrics']['mAP'], result['metrics']['pixAcc']) == (100.0, 100.0)
    assert result['num_images'] == 5 and np.trace(result['confusion_matrix']) == 5 * 128 * 256


@pytest.mark.parametrize('case', ['unmatched', 'extra', 'empty', 'size', 'count'])
def test_bad_inputs_are_named(tmp_path, case):
    folder = _result_folder(tmp_path / 'r', [0, 1, 2])
    fake, label = folder / 'images' / 'fake_B', folder / 'images' / 'real_A'
    expect = None
    if case == 'unmatched':
        (label / '2_B.png').rename(label / 'other.png')
        message = r"only in the first \(e.g. \['2_B'\]\).*only in the second \(e.g. \['other'\]\)"
    elif case == 'extra':
        Image.new('RGB', (256, 256)).save(fake / '9_B.png')
        message = r'fake_B \(4 images\) and .*real_A \(3 images\)'
    elif case == 'empty':
        for p in label.iterdir():
            p.unlink()
        message = 'real_A holds no images'
    elif case == 'size':
        Image.new('RGB', (128, 128)).save(label / '1_B.png')
        message = r'1_B.png is 256x256 but its label .*1_B.png is 128x128'
    else:
        expect, message = 4, 'holds 3 images, expected 4'
    with pytest.raises(EvaluationError, match=message):
        cs.evaluate_cityscapes(fake, label, OracleDRN(), expect_count=expect)


def test_cli_writes_json(drn, tmp_path, capsys):
    folder = _result_folder(tmp_path / 'results' / 'city_run' / 'test_40', [0, 13])
    weights = tmp_path / 'drn.pth'
    torch.save({'state_dict': {f'module.{k}': v for k, v in drn.state_dict().items()}}, weights)
    cs.main([str(folder), '--drn-weights', str(weights), '--device', 'cpu'])
    result = json.loads((folder / 'metrics_cityscapes.json').read_text())
    assert json.loads(capsys.readouterr().out) == result
    assert (result['kind'], result['run'], result['epoch'], result['epoch_choice']) == \
        ('cityscapes', 'city_run', '40', 'fixed')
    # both accuracies by default: the paper's (get_Acc.py's) for its tables, the correct ones beside
    assert set(result['metrics']) >= {'mAP', 'pixAcc', 'classAcc'} and 'pixAcc' in result['official_get_acc']
    cs.main([str(folder), '--drn-weights', str(weights), '--device', 'cpu', '--no-official-get-acc'])
    assert 'official_get_acc' not in json.loads((folder / 'metrics_cityscapes.json').read_text())


def test_photos_as_labels_are_refused(tmp_path):
    """AtoB results put photos in real_A; scoring them as label maps would be meaningless."""
    folder = _result_folder(tmp_path / 'r', [0, 1])
    noise = np.random.default_rng(0).integers(40, 215, (256, 256, 3), dtype=np.uint8)
    Image.fromarray(noise).save(folder / 'images' / 'real_A' / '1_B.png')
    with pytest.raises(EvaluationError, match=r'real_A/1_B.png is not a Cityscapes colour label map.*BtoA'):
        cs.evaluate_cityscapes(folder / 'images' / 'fake_B', folder / 'images' / 'real_A', OracleDRN())
