"""`import mmghost` / `import mmghost.datasets` only register classes: torch, mmengine, mmcv and mmdet keep every
object they had (issue 11), and an mmdet config that only adds `custom_imports=['mmghost']` runs exactly as
without it. Each check runs in a fresh interpreter, so nothing imported by other tests hides a change."""
import json
import os
import os.path as osp
import subprocess
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

# Takes a snapshot of the objects other code relies on, imports mmghost, takes another one, and prints what
# changed as JSON. Third-party modules mmghost imports are imported first, so that their own import-time
# registrations are not counted.
IDENTITY_SCRIPT = r'''
import inspect, json, sys, tempfile, os
import numpy as np
import torch, torch.serialization
import mmengine.runner, mmengine.runner.checkpoint, mmengine.runner.runner, mmengine.hooks, mmengine.fileio
import mmengine.registry
from mmengine.hooks import CheckpointHook
from mmengine.runner import Runner
from mmengine.runner.checkpoint import CheckpointLoader
import mmcv.ops
import mmdet.datasets, mmdet.engine, mmdet.models, mmdet.registry

import mmcv.ops.focal_loss, mmcv.ops.roi_align  # noqa: E401
nms_module = sys.modules['mmcv.ops.nms']  # the attribute mmcv.ops.nms is the function
MODULES = [torch.serialization, mmengine.runner, mmengine.runner.checkpoint, mmengine.runner.runner,
           mmengine.hooks, mmengine.fileio, mmcv.ops, nms_module,
           sys.modules['mmcv.ops.roi_align'], sys.modules['mmcv.ops.focal_loss']]
CLASSES = [CheckpointHook, Runner, CheckpointLoader]
CLASSES += [obj for obj in vars(mmcv.ops).values() if inspect.isclass(obj)]
CLASSES += [obj for mod in MODULES[-3:] for obj in vars(mod).values() if inspect.isclass(obj)]
REGISTRIES = [obj for mod in (mmengine.registry, mmdet.registry) for obj in vars(mod).values()
              if isinstance(obj, mmengine.registry.Registry)]


def snapshot():
    snap = {'sys.excepthook': sys.excepthook, 'torch.load': torch.load, 'torch.save': torch.save}
    for mod in MODULES:
        snap.update({f'{mod.__name__}.{k}': v for k, v in vars(mod).items() if not k.startswith('__')})
    for cls in CLASSES:
        snap.update({f'{cls.__module__}.{cls.__qualname__}.{k}': v for k, v in vars(cls).items()})
    snap.update({f'CheckpointLoader._schemes[{k!r}]': v for k, v in CheckpointLoader._schemes.items()})
    for reg in REGISTRIES:
        snap.update({f'registry {reg.scope}.{reg.name}[{k}]': v for k, v in reg.module_dict.items()})
    get_safe_globals = getattr(torch.serialization, 'get_safe_globals', None)
    snap['safe_globals'] = tuple(get_safe_globals()) if get_safe_globals else ()
    return snap


def differences(before, after):
    changed = sorted(k for k in before if k in after and after[k] is not before[k]
                     and not (k == 'safe_globals' and after[k] == before[k]))
    removed = sorted(k for k in before if k not in after)
    # New names are fine where mmghost registers its classes; anything else mmghost defines is not.
    added = sorted(k for k in after if k not in before and not k.startswith('registry ')
                   and getattr(after[k], '__module__', '').startswith('mmghost'))
    registered = sorted(k for k in after if k not in before and k.startswith('registry '))
    foreign = [k for k in registered if not getattr(after[k], '__module__', '').startswith('mmghost')]
    return dict(changed=changed, removed=removed, added=added, foreign_registrations=foreign,
                registered=registered)


before = snapshot()
import mmghost, mmghost.datasets  # noqa: E401
after_import = snapshot()

# Using the opt-in parts leaves nothing behind either.
from mmghost.engine import load_checkpoint_file, mmcv_ops_in_float32
from mmengine.logging import MessageHub
hub = MessageHub('side_effects')
hub.update_scalar('loss', np.float64(1.0))
path = os.path.join(tempfile.mkdtemp(), 'iter_1.pth')
torch.save(dict(meta=dict(iter=1), state_dict={}, message_hub=hub.state_dict()), path)
assert load_checkpoint_file(path)['meta']['iter'] == 1
with mmcv_ops_in_float32():
    patched = nms_module.NMSop.__dict__['forward'] is not before['mmcv.ops.nms.NMSop.forward']
after_use = snapshot()
print(json.dumps(dict(after_import=differences(before, after_import), after_use=differences(before, after_use),
                      patched_inside=patched)))
'''


def run_python(code, *args, timeout=300):
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS='1')
    proc = subprocess.run([sys.executable, '-c', code, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_import_mmghost_and_datasets_changes_no_object_of_torch_mmengine_mmcv_mmdet():
    result = run_python(IDENTITY_SCRIPT)
    for stage in ('after_import', 'after_use'):
        diff = result[stage]
        assert diff['changed'] == [], (stage, diff['changed'])
        assert diff['removed'] == [] and diff['added'] == [] and diff['foreign_registrations'] == [], diff
    registered = result['after_import']['registered']
    for name in ('AtomicCheckpointHook', 'DataProblemsHook', 'MMGhostRunner', 'SafeCocoDataset', 'GhostNet',
                 'CheckedDetDataPreprocessor', 'PlainStem'):
        assert any(key.endswith(f'[{name}]') for key in registered), name
    # Layers any scope's build_conv_layer / backbone lookup must find live in mmengine's root MODELS (added names).
    for name in ('GhostConv', 'CifarResNet'):
        assert f'registry mmengine.model[{name}]' in registered, (name, registered)
    assert result['patched_inside']  # float32 NMS was there inside its context, and is gone after it


# An mmdet config (RetinaNet R-50 shrunk to ResNet-18 at 1/8 width) trained for one iteration by mmengine's
# Runner, as mmdet's tools/train.py does; prints what the run was made of.
MMDET_RUN_SCRIPT = r'''
import json, os, sys
import torch
from mmengine.config import Config
from mmengine.runner import Runner

cfg = Config.fromfile(sys.argv[1])
cfg.work_dir = sys.argv[2]
runner = Runner.from_cfg(cfg)  # as mmdet's tools/train.py does for a config without runner_type
runner.train()


def name(obj):
    obj = getattr(obj, '__func__', obj)
    return f'{getattr(obj, "__module__", "?")}.{getattr(obj, "__qualname__", type(obj).__name__)}'


def structure(obj):
    if isinstance(obj, dict):
        return {str(k): structure(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [structure(v) for v in obj]
    if torch.is_tensor(obj):
        return f'tensor{tuple(obj.shape)} {obj.dtype}'
    return type(obj).__name__


from mmcv.ops.nms import NMSop
import mmengine.runner.checkpoint as ckpt_mod
from mmengine.hooks import CheckpointHook
from mmengine.runner.checkpoint import CheckpointLoader
checkpoint = torch.load(f'{sys.argv[2]}/iter_1.pth', map_location='cpu', weights_only=False)  # our own file
checkpoint['meta'] = sorted(checkpoint['meta'])  # values hold the config text and the time
try:
    runner.load_checkpoint(f'{sys.argv[2]}/iter_1.pth')
    load = 'ok'
except Exception as e:  # what mmengine does on this torch, with or without mmghost
    load = type(e).__name__
print(json.dumps(dict(
    runner=name(type(runner)),
    hooks=[(name(type(h)), h.priority) for h in runner.hooks],
    functions={k: name(v) for k, v in [('torch.load', torch.load), ('excepthook', sys.excepthook),
                                       ('NMSop.forward', NMSop.forward)]
               + [(k, getattr(ckpt_mod, k)) for k in ('load_checkpoint', 'save_checkpoint', '_load_checkpoint',
                                                      'find_latest_checkpoint')]
               + [(f'scheme {k}', v) for k, v in CheckpointLoader._schemes.items()]
               + [(f'CheckpointHook.{k}', v) for k, v in vars(CheckpointHook).items() if callable(v)]
               + [(f'Runner.{k}', v) for k, v in vars(Runner).items() if callable(v)]},
    files=sorted(f for f in os.listdir(sys.argv[2]) if os.path.isfile(os.path.join(sys.argv[2], f))),
    checkpoint=structure(checkpoint), load=load)))
'''

MMDET_CONFIG = '''_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'
data_root = {data_root!r}
model = dict(
    backbone=dict(depth=18, base_channels=8, init_cfg=None),
    neck=dict(in_channels=[8, 16, 32, 64], out_channels=16),
    bbox_head=dict(num_classes=3, in_channels=16, feat_channels=16, stacked_convs=1))
pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations', with_bbox=True),
            dict(type='Resize', scale=(64, 64), keep_ratio=True), dict(type='PackDetInputs')]
train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False, sampler=dict(shuffle=False),
                        dataset=dict(data_root=data_root, ann_file='annotations/instances_train.json',
                                     data_prefix=dict(img=''), metainfo=dict(classes=('circle', 'square', 'triangle')),
                                     pipeline=pipeline))
val_dataloader = None
val_cfg = None
val_evaluator = None
test_dataloader = None
test_cfg = None
test_evaluator = None
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=1)
param_scheduler = []
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=1), logger=dict(interval=1))
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
'''


@pytest.mark.slow
def test_mmdet_config_with_custom_imports_mmghost_runs_exactly_as_without(tmp_path):
    from fixtures.tiny_config import make_dataset
    data = make_dataset(str(tmp_path / 'data'), images=2, size=64)
    runs = {}
    for variant, extra in (('plain', ''), ('mmghost', "custom_imports = dict(imports=['mmghost'])\n")):
        config = tmp_path / variant / 'retinanet_tiny.py'  # one name: the runner copies it into the work dir
        config.parent.mkdir()
        config.write_text(MMDET_CONFIG.format(data_root=data + '/') + extra)
        runs[variant] = run_python(MMDET_RUN_SCRIPT, str(config), str(tmp_path / f'work_{variant}'))
    plain, with_mmghost = runs['plain'], runs['mmghost']
    assert with_mmghost['runner'] == plain['runner'] == 'mmengine.runner.runner.Runner'
    assert with_mmghost['hooks'] == plain['hooks']
    assert ['mmengine.hooks.checkpoint_hook.CheckpointHook', 'VERY_LOW'] in plain['hooks']
    assert with_mmghost['functions'] == plain['functions']
    assert with_mmghost['files'] == plain['files']
    assert with_mmghost['checkpoint'] == plain['checkpoint']
    assert with_mmghost['load'] == plain['load'], (with_mmghost['load'], plain['load'])  # torch >= 2.6: refused
