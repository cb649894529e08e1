"""benchmarks/latency.py --quick: every row, runtime and thread count runs, and the report is made from the JSON.

Slow (4 to 5.5 minutes on the shared 2-core machine, load average about 3): it exports five detectors with mmdeploy and
converts them for OpenVINO, as the full run does, at tiny inputs.
"""
import json
import os.path as osp
import subprocess
import sys

import pytest

pytest.importorskip('mmdeploy', reason='the mmdeploy stack (.venv-deploy) runs these: tools/run_tests.sh --stack deploy')
pytest.importorskip('openvino', reason='benchmarks/latency.py times OpenVINO too (requirements/deploy.txt)')

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


pytestmark = pytest.mark.slow


@pytest.fixture(scope='module')
def quick_run(tmp_path_factory):
    work = tmp_path_factory.mktemp('latency')
    out = work / 'latency.json'
    proc = subprocess.run([sys.executable, 'benchmarks/latency.py', '--quick', '--out', str(out), '--work-dir',
                           str(work / 'work')], cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, f'{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}'
    return json.loads(out.read_text()), work


def test_quick_run_times_every_model_in_every_runtime_and_thread_count(quick_run):
    from benchmarks.latency import BACKBONES, BLOCKS, DETECTORS, RUNTIMES
    results, _ = quick_run
    assert results['quick'] and set(results['blocks']) == set(BLOCKS)
    for block, out in results['blocks'].items():
        assert set(out['threads']) == {'1', '2'}, block
        built = [m for m, info in out['models'].items() if 'skipped' not in info]
        expected = BACKBONES if out['kind'] == 'backbone' else [n for n, (f, _) in DETECTORS.items()
                                                                if f == BLOCKS[block][1]]
        assert set(out['models']) == set(expected)
        assert out['peer'] in built
        for run in out['threads'].values():
            assert set(run['modes']) == {f'{m}|{r}' for m in built for r in RUNTIMES}
            assert run['ratios'][out['peer']]['best'] == 1.0
            assert all(row['median_ms'] > 0 for row in run['modes'].values())
    for name in ('GhostNet-1.0x', 'GhostNet-1.1x', 'GhostNetV2-1.0x', 'MobileNetV2'):
        assert 'skipped' not in results['blocks']['backbones-320x320']['models'][name], name


def test_quick_run_gives_every_detector_the_same_post_processing(quick_run):
    """score_thr 0: every model of a block keeps max_per_img boxes, in every runtime."""
    results, _ = quick_run
    for block in ('retinanet-1333x800', 'ssdlite-320x320'):
        out = results['blocks'][block]
        counts = {case: row['detections'] for run in out['threads'].values() for case, row in run['modes'].items()}
        max_per_img = {info['test_cfg']['max_per_img'] for info in out['models'].values()}
        assert len(max_per_img) == 1 and set(counts.values()) == max_per_img, counts
        assert all(info['test_cfg']['score_thr'] == 0 for info in out['models'].values())


def test_report_writes_the_table_and_the_picture_from_the_json(quick_run):
    from benchmarks.latency import MARKERS, write_report
    results, work = quick_run
    docs = work / 'benchmarks.md'
    docs.write_text(f'# Benchmarks\n\n{MARKERS[0]}\nTHE PREVIOUS TABLE\n{MARKERS[1]}\n\nafter\n')
    write_report(results, docs=str(docs), picture_path=str(work / 'latency_flops.svg'))
    text = docs.read_text()
    assert 'THE PREVIOUS TABLE' not in text and text.endswith('after\n')
    assert results['command'] in text and '| GhostNet-1.1x |' in text
    assert (work / 'latency_flops.svg').read_text().lstrip().startswith('<?xml')
