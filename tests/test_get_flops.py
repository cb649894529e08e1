"""tools/get_flops.py: backbone and detector FLOPs/params with mmengine's complexity analysis.

Figures are checked against independent references where one exists (timm's ghostnet_100 parameter shapes in
tests/fixtures/ghostnet_parity.npz; the GhostNet paper's FLOPs within a stated tolerance). The exact figures this
code measures itself are kept only in tests named ``..._drift``: they catch unnoticed changes, they do not show
that a figure is right.
"""
import json

import pytest
from mmengine.analysis import get_model_complexity_info

import get_flops  # tools/get_flops.py
from fixtures.timm_reference import PAPER_TABLE8_BACKBONE_FLOPS_1_1X, timm_ghostnet_100_parameter_count
from mmghost.models import GhostNet, GhostNetClassifier

RETINANET = 'configs/retinanet_ghostnet_fpn.py'


def test_backbone_figures_and_stage_table():
    result = get_flops.backbone_complexity(GhostNet(1.1))
    # GhostNet-1.1x to the stride-32 blocks at 224x224 against the paper's Table 8 (164M), within 2%.
    assert abs(result['flops'] / PAPER_TABLE8_BACKBONE_FLOPS_1_1X - 1) < 0.02, result['flops']
    stages = result['stages']
    assert [s['name'] for s in stages] == ['stem', 'stage 1', 'stage 2', 'stage 3', 'stage 4']
    assert [s['stride'] for s in stages] == [2, 4, 8, 16, 32]
    assert [s['channels'] for s in stages] == [16, 28, 44, 124, 176]
    assert [s['output_size'] for s in stages] == [[112, 112], [56, 56], [28, 28], [14, 14], [7, 7]]
    assert [s['output'] for s in stages] == [False, True, True, True, True]
    assert sum(s['flops'] for s in stages) == result['flops']
    assert sum(s['params'] for s in stages) == result['params']
    # The same counter as get_model_complexity_info, the entry point mmengine documents (small input: fast).
    info = get_model_complexity_info(GhostNet(1.1).eval(), input_shape=(3, 96, 96), show_table=False,
                                     show_arch=False)
    small = get_flops.backbone_complexity(GhostNet(1.1), (96, 96))
    assert info['flops'] == small['flops'] and info['params'] == small['params'] == result['params']


def test_backbone_figures_drift():
    """Drift check, not a reference: the exact figures this code measured for GhostNet-1.1x at 224x224
    (``python tools/get_flops.py configs/retinanet_ghostnet_fpn.py --no-detector --paper``): to the stride-32
    blocks, with the final 1x1 conv, and the 1.0x classifier's FLOPs (eval mode, BN counted). The independent
    checks are the paper and timm comparisons in this file and tests/test_backbone.py."""
    result = get_flops.backbone_complexity(GhostNet(1.1))
    assert result['flops'] == 162_820_112 and result['params'] == 3_033_722
    assert round(get_flops.backbone_complexity(GhostNet(1.1, out_indices=(5, )))['flops'] / 1e6, 2) == 172.03
    assert round(get_flops.backbone_complexity(GhostNetClassifier(1.0))['flops'] / 1e6, 2) == 148.27


def test_final_conv_and_classifier():
    full = get_flops.backbone_complexity(GhostNet(1.1, out_indices=(5, )))
    assert full['stages'][-1]['name'] == 'final conv'
    assert full['flops'] > get_flops.backbone_complexity(GhostNet(1.1))['flops']
    classifier = get_flops.backbone_complexity(GhostNetClassifier(1.0))
    assert classifier['params'] == timm_ghostnet_100_parameter_count()  # timm's ghostnet_100: 5,182,508
    assert [s['name'] for s in classifier['stages']] == ['stem', 'stage 1', 'stage 2', 'stage 3', 'stage 4',
                                                         'final conv', 'ImageNet head']
    head = classifier['stages'][-1]
    assert head['modules'] == 'pool, conv_head, classifier'
    assert head['params'] == 960 * 1280 + 1280 + 1280 * 1000 + 1000


@pytest.fixture(scope='module')
def paper_cli(tmp_path_factory):
    """``get_flops.py RETINANET --no-detector --paper --json OUT``, run once: (result, printed text, saved JSON)."""
    import contextlib
    import io
    out = tmp_path_factory.mktemp('flops') / 'flops.json'
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        result = get_flops.main([RETINANET, '--no-detector', '--paper', '--json', str(out)])
    return result, text.getvalue(), json.loads(out.read_text())


def test_cli_with_paper_rows(paper_cli):
    result, text, saved = paper_cli
    assert 'detector' not in result
    # Paper Table 8 next to ours; the paper's own figures are constants of the tool.
    assert '| MobileNetV2 1.0x |        300M |' in text and '26.7 |' in text
    assert '| MobileNetV3 1.0x |        219M |            n/a |' in text
    assert '(141M, T7)' in text and 'has not been measured by this project' in text
    assert saved['backbone']['flops'] == result['backbone']['flops']
    assert saved['paper_table8'][2] == dict(backbone='GhostNet 1.1x', flops=164e6, retinanet_map=26.6,
                                            faster_rcnn_map=26.9)
    detection = [r['backbone'] for r in saved['paper_backbones'] if r['kind'] == 'detection backbone']
    assert detection == ['GhostNet 1.0x', 'GhostNet 1.1x', 'MobileNetV2 1.0x']
    imagenet = {r['backbone']: r for r in saved['paper_backbones'] if r['kind'] == 'ImageNet network'}
    assert list(imagenet) == ['GhostNet 1.0x', 'GhostNetV2 1.0x', 'GhostNetV2 1.3x', 'GhostNetV2 1.6x',
                              'GhostNetV3 1.0x', 'GhostNetV3 1.3x']
    assert imagenet['GhostNet 1.0x']['params'] == timm_ghostnet_100_parameter_count()
    # Every member measured (deployed) is within 1% of its paper's FLOPs, and every member is measured.
    assert all('flops' in row for row in imagenet.values()), imagenet
    for row in imagenet.values():
        assert abs(row['flops'] / row['paper_flops'] - 1) < 0.01, row


def test_cli_paper_table_figures_drift(paper_cli):
    """Drift check, not a reference: the table rows as this code printed them (the command is the fixture's).
    The paper columns are the tool's constants; the measured columns are this code's own output."""
    _, text, _ = paper_cli
    assert 'Backbone (GhostNet) at 224x224: 162.82M FLOPs, 3,033,722 params' in text
    assert '| stage 4 | blocks.7..8 | yes    |      176 |     32 |     7x7 |  54.80M |' in text
    assert '| GhostNet 1.1x    |        164M |        162.82M |      155.25M |      172.03M |       3,033,722 |' in text
    # GhostNet-1.0x deployed (norms folded, what the paper counts): 141.20M for the paper's 141M.
    assert '| GhostNet 1.0x   |        141M |            141.20M | 1.001 |  148.27M |         5,182,508 |' in text


def test_cli_detector_parts(capsys):
    result = get_flops.main([RETINANET, '--shape', '64', '96'])
    text = capsys.readouterr().out
    assert 'Detector tensor forward (no post-processing) at 64x96:' in text
    det = result['detector']
    assert [p['name'] for p in det['parts']] == ['backbone', 'neck', 'bbox_head']
    assert det['flops'] == sum(p['flops'] for p in det['parts'])
    assert det['params'] == sum(p['params'] for p in det['parts'])
    assert det['parts'][0]['params'] == result['backbone']['params']


def test_two_stage_detector_and_padding(capsys):
    result = get_flops.main(['configs/faster_rcnn_ghostnet-1.0x_fpn.py', '--shape', '100', '120'])
    text = capsys.readouterr().out
    assert '(100x120 padded to a multiple of 32)' in text
    assert result['detector']['input_shape'] == [1, 3, 128, 128]
    assert [p['name'] for p in result['detector']['parts']] == ['backbone', 'neck', 'rpn_head', 'roi_head']
    assert all(p['flops'] > 0 for p in result['detector']['parts'])
    assert result['backbone']['flops'] == get_flops.backbone_complexity(GhostNet(1.0))['flops']  # the config's


def test_backbone_only_and_bad_shape(capsys):
    result = get_flops.main([RETINANET, '--no-detector', '--backbone-shape', '320', '320'])
    assert 'detector' not in result and result['backbone']['input_shape'] == [1, 3, 320, 320]
    assert 'Detector' not in capsys.readouterr().out
    with pytest.raises(SystemExit):
        get_flops.main([RETINANET, '--shape', '16', '16'])
