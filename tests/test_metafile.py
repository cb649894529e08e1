"""model-index.yml / configs/metafile.yml (mim style): structure, configs, and the measured figures in them.

FLOPs and parameters in the metafile are what tools/get_flops.py measures; the metric values are the paper's
and must say so in their names. Where an independent reference exists (timm's ghostnet_100 parameter shapes,
tests/fixtures/ghostnet_parity.npz; the paper's backbone FLOPs) the metafile's figures are checked against it;
re-measuring them with the tool that wrote them is a drift check only (the tests named ``..._drift``).
"""
import os.path as osp

import pytest
import yaml
from mmengine.analysis import parameter_count
from mmengine.config import Config

import get_flops  # tools/get_flops.py
from fixtures.timm_reference import timm_ghostnet_100_parameter_count

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def _load(path):
    with open(osp.join(ROOT, path)) as f:
        return yaml.safe_load(f)


def _models():
    index = _load('model-index.yml')
    collections, models = [], []
    for path in index['Import']:
        meta = _load(path)
        collections += meta.get('Collections', [])
        models += meta.get('Models', [])
    return collections, models


COLLECTIONS, MODELS = _models()
PAPERS = {'https://arxiv.org/abs/1911.11907', 'https://arxiv.org/abs/2211.12905', 'https://arxiv.org/abs/2404.11202',
          'https://arxiv.org/abs/2211.06088'}  # GhostNet, V2, V3, RepGhost
IDS = [m['Name'] for m in MODELS]


def test_index_structure():
    assert MODELS and COLLECTIONS
    names = {c['Name'] for c in COLLECTIONS}
    assert len(set(IDS)) == len(IDS), 'model names must be unique'
    for c in COLLECTIONS:
        assert {'Name', 'Metadata'} <= set(c)
        if 'Paper' in c:  # GhostNet (CVPR 2020), GhostNetV2 (NeurIPS 2022), GhostNetV3 (2024), RepGhost (2022)
            assert c['Paper']['URL'] in PAPERS, c['Name']
    for m in MODELS:
        assert m['In Collection'] in names, m['Name']
        assert {'Training Data', 'Epochs', 'FLOPs', 'Parameters', 'Backbone FLOPs', 'Backbone Parameters',
                'FLOPs Input'} <= set(m['Metadata']), m['Name']
        for key in ('FLOPs', 'Parameters', 'Backbone FLOPs', 'Backbone Parameters'):
            assert isinstance(m['Metadata'][key], int) and m['Metadata'][key] > 0
        for result in m.get('Results', []):
            assert {'Task', 'Dataset', 'Metrics'} <= set(result)
            # We have trained nothing on COCO/ImageNet: every metric is the paper's, and labelled so.
            assert all(name.endswith('(paper)') for name in result['Metrics']), result
            assert result['Source'].startswith('paper')
        assert osp.isfile(osp.join(ROOT, m.get('README', 'README.md')))
    # Every detection config of the GhostNet family is listed. Not here: configs/imagenet/ and configs/cifar10/
    # (mmpretrain classification recipes, checked by tests/test_imagenet_configs.py and
    # tests/test_ghost_networks.py), configs/deploy/ (mmdeploy settings, not models) and configs/ghost_resnet/ (the
    # paper's Ghost-ResNet-50 module experiments, whose params/FLOPs against paper Table 5 are checked by
    # tests/test_ghost_networks.py; they have no metafile entries yet).
    import glob
    configs = {osp.relpath(p, ROOT) for p in glob.glob(osp.join(ROOT, 'configs', '**', '*.py'), recursive=True)
               if not osp.basename(osp.dirname(p)).startswith('_')
               and osp.relpath(p, ROOT).split(osp.sep)[1] not in ('imagenet', 'cifar10', 'ghost_resnet', 'deploy')}
    missing = configs - {m['Config'] for m in MODELS}
    assert not missing, (f'configs not in configs/metafile.yml: {sorted(missing)}; add them with the figures of '
                         'tools/get_flops.py')


@pytest.mark.parametrize('model', MODELS, ids=IDS)
def test_config_parses_and_matches_metadata(model):
    path = osp.join(ROOT, model['Config'])
    assert osp.isfile(path)
    cfg = Config.fromfile(path)
    meta = model['Metadata']
    assert cfg.train_cfg.max_epochs == meta['Epochs']
    assert cfg.auto_scale_lr.base_batch_size == meta['Batch Size']
    width = f"{cfg.model.backbone.get('widen_factor', 1.0):.2f}"
    width = width[:-1] if width.endswith('0') else width  # 1.0x, 1.1x; RepGhostNet's 1.11x
    assert meta['Backbone'] == f'{cfg.model.backbone.type}-{width}x'
    h, w = (int(s) for s in meta['FLOPs Input'].split('x')[2:])
    assert h % 32 == 0 and w % 32 == 0


def test_paper_figures_match_the_tools_constants():
    paper = {row['backbone']: row for row in get_flops.PAPER_TABLE8}
    by_name = {m['Name']: m for m in MODELS}
    ghost = paper['GhostNet 1.1x']
    for name, key in (('retinanet_ghostnet-1.1x_fpn_1x_coco', 'retinanet_map'),
                      ('faster-rcnn_ghostnet-1.1x_fpn_1x_coco', 'faster_rcnn_map')):
        m = by_name[name]
        assert m['Metadata']['Paper Backbone FLOPs'] == ghost['flops']
        assert m['Results'][0]['Metrics']['box AP (paper)'] == ghost[key]
    assert (by_name['retinanet_mobilenetv2-1.0x_fpn_shapes']['Metadata']['Paper Backbone FLOPs']
            == paper['MobileNetV2 1.0x']['flops'])
    table7 = get_flops.PAPER_TABLE7_GHOSTNET_1X
    m = by_name['retinanet_ghostnet-1.0x_fpn_1x_coco']
    assert m['Metadata']['Paper Classifier FLOPs'] == table7['flops']
    assert m['Results'][0]['Metrics']['Top 1 Accuracy (paper)'] == table7['top1']


GHOSTNET_1X = [m for m in MODELS if m['Metadata']['Backbone'] == 'GhostNet-1.0x']
WITH_PAPER_FLOPS = [m for m in MODELS if 'Paper Backbone FLOPs' in m['Metadata']
                    and m['Metadata']['Backbone'].startswith('GhostNet')]


@pytest.mark.parametrize('model', GHOSTNET_1X, ids=[m['Name'] for m in GHOSTNET_1X])
def test_ghostnet_1x_backbone_parameters_are_timms(model):
    """Independent reference: timm's ghostnet_100 cut after the deepest output the config's backbone builds."""
    backbone = Config.fromfile(osp.join(ROOT, model['Config'])).model.backbone
    deepest = max(backbone.get('out_indices', (1, 2, 3, 4)))
    assert model['Metadata']['Backbone Parameters'] == timm_ghostnet_100_parameter_count(deepest)


@pytest.mark.parametrize('model', WITH_PAPER_FLOPS, ids=[m['Name'] for m in WITH_PAPER_FLOPS])
def test_backbone_flops_within_2_percent_of_the_paper(model):
    """Independent reference: the paper's backbone FLOPs (Table 8) that the metafile quotes next to ours."""
    meta = model['Metadata']
    assert abs(meta['Backbone FLOPs'] / meta['Paper Backbone FLOPs'] - 1) < 0.02, meta


@pytest.mark.parametrize('model', MODELS, ids=IDS)
def test_backbone_flops_and_params_drift(model):
    """Drift check, not a reference: the metafile's backbone figures are what tools/get_flops.py measures
    (``python tools/get_flops.py CONFIG --no-detector``); a change means the model or the counter changed."""
    cfg = Config.fromfile(osp.join(ROOT, model['Config']))
    detector = get_flops.build_detector(cfg)
    backbone = get_flops.backbone_complexity(detector.backbone)
    assert model['Metadata']['Backbone FLOPs'] == backbone['flops']
    assert model['Metadata']['Backbone Parameters'] == backbone['params']
    assert model['Metadata']['Parameters'] == parameter_count(detector)['']


def _detector_flops_check(model):
    meta = model['Metadata']
    h, w = (int(s) for s in meta['FLOPs Input'].split('x')[2:])
    result = get_flops.measure(osp.join(ROOT, model['Config']), shape=(h, w))
    assert result['detector']['input_shape'] == [1, 3, h, w]
    assert meta['FLOPs'] == result['detector']['flops']
    assert meta['Parameters'] == result['detector']['params']


SMALL = [m for m in MODELS if m['Metadata']['FLOPs'] < 5e9]
LARGE = [m for m in MODELS if m['Metadata']['FLOPs'] >= 5e9]


@pytest.mark.parametrize('model', SMALL, ids=[m['Name'] for m in SMALL])
def test_detector_flops_drift(model):
    """Drift check, not a reference: the detector figures are what ``python tools/get_flops.py CONFIG --shape H W``
    measures at the metafile's FLOPs Input (no paper gives whole-detector FLOPs for these configs)."""
    _detector_flops_check(model)


@pytest.mark.slow
@pytest.mark.parametrize('model', LARGE, ids=[m['Name'] for m in LARGE])
def test_detector_flops_at_coco_size_drift(model):
    """Drift check as above, for the 800x1344 detectors: 20-60 s each on 2 cores."""
    _detector_flops_check(model)
