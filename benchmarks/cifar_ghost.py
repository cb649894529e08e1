"""The Ghost module's claim checked on real CIFAR-10, on a CPU: a plain network and its Ghost version (s=2, d=3)
trained under one identical recipe, then the paper's ``s`` and ``d`` ablations at a smaller budget.

    PYTHONUNBUFFERED=1 nice -n 5 .venv-torch21/bin/python benchmarks/cifar_ghost.py [--phase main|ablations|all]
        [--epochs 5] [--ablation-epochs 3] [--ablation-train 15000] [--threads 1] [--only RUN ...] [--out JSON]
    .venv-torch21/bin/python benchmarks/cifar_ghost.py --time [CONFIG ...]     # step times only
    .venv-torch21/bin/python benchmarks/cifar_ghost.py --report                # tables of the JSON's results

Needs the torch-2.1 stack (mmpretrain: the models are mmpretrain ``ImageClassifier`` s built from
configs/cifar10/ through the mmpretrain registry) and the shared copy of CIFAR-10
(``../shared/data/cifar10-jpeg.tar.gz``, 50,000 train / 10,000 test JPEGs; see its README). The JPEGs are decoded
once into ``data/cifar10_cache.npz`` (uint8, gitignored) and reused.

What is the same for every run (the "recipe", stored in the JSON next to each result):

* the training loop is a lean torch loop over the in-memory uint8 tensors, not mmengine's Runner with
  mmpretrain's pipeline: on 2 CPU cores the per-image Python pipeline would cost as much as the network. The
  augmentation is the same as the configs' ``RandomCrop(32, padding=4)`` + ``RandomFlip(0.5)``, done in torch on
  whole batches; normalisation uses the config's ``data_preprocessor`` mean/std;
* SGD with Nesterov momentum 0.9, weight decay on conv/linear weights only (not on norms and biases), a
  one-cycle learning rate (warm-up then cosine to ~0), label smoothing, batch 128, the same seed (same
  initialisation stream, data order and crops) for every run;
* top-1 on the 10,000 test images after the last epoch (one evaluation, no checkpoint picking);
* each run trains in the memory format (channels_last or contiguous) that is faster for its network, timed on a
  few steps before it starts: the arithmetic is the same, and torch 2.1's CPU depthwise convs are ~2x slower in
  channels_last while the plain convs are faster in it;
* params and FLOPs (multiply-adds at 1x3x32x32) of the whole classifier from mmengine's
  ``get_model_complexity_info``, wall time of the training.

Resumable: each finished run is written to the JSON at once and skipped on a restart with the same recipe; a
run in progress also saves its state after every epoch under ``work_dirs/cifar_ghost/`` and resumes from it.
"""
import argparse
import copy
import io
import json
import os
import os.path as osp
import sys
import tarfile
import time

import numpy as np
import torch
import torch.nn.functional as F

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

TARBALL = osp.join(ROOT, '..', 'shared', 'data', 'cifar10-jpeg.tar.gz')
CACHE = osp.join(ROOT, 'data', 'cifar10_cache.npz')
OUT = osp.join(ROOT, 'benchmarks', 'results', 'cifar_ghost.json')
WORK_DIR = osp.join(ROOT, 'work_dirs', 'cifar_ghost')
# mmpretrain's CIFAR10 class order (= the original release's label order)
CLASSES = ('airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck')

PLAIN_CONFIG = 'configs/cifar10/resnet20_cifar10.py'
GHOST_CONFIG = 'configs/cifar10/ghost-resnet20-s2_cifar10.py'
# (run name, config, GhostConv overrides); the ablations vary the Ghost config's conv_cfg as the paper's
# Tables 1-2 do (there on VGG-16, here on the network the CPU budget allows).
MAIN_RUNS = (('plain', PLAIN_CONFIG, None), ('ghost-s2-d3', GHOST_CONFIG, None))
ABLATION_RUNS = (('plain', PLAIN_CONFIG, None), ) + tuple(
    (f'ghost-s{s}-d{d}', GHOST_CONFIG, dict(ratio=s, dw_size=d))
    for s, d in ((2, 3), (3, 3), (4, 3), (5, 3), (2, 1), (2, 5), (2, 7)))


# ---------------------------------------------------------------- data
def _decode(data: bytes) -> np.ndarray:
    """JPEG bytes -> HxWx3 uint8 RGB."""
    try:
        from PIL import Image
    except ImportError:  # mmcv's runtime requirements bring OpenCV
        import cv2
        return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1].copy()
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert('RGB'))


def read_cifar10_tar(tarball=TARBALL, classes=CLASSES, per_class=None, splits=('train', 'test')):
    """Decode the shared JPEG copy of CIFAR-10 (``<split>/<class>/NNNN.jpg``).

    Args:
        tarball (str): path of cifar10-jpeg.tar.gz.
        classes (Sequence[str]): class folders to read; labels are their index in this sequence.
        per_class (dict | int | None): the first N images (by file name) of each class, per split
            (``{'train': 500, 'test': 100}``) or for every split; None reads all.
        splits (Sequence[str]): which splits to read.

    Returns:
        dict: ``{split: (images uint8 (N, 32, 32, 3) RGB, labels int64 (N,))}``, sorted by (label, file name).
    """
    if isinstance(per_class, int) or per_class is None:
        per_class = {split: per_class for split in splits}
    label_of = {name: i for i, name in enumerate(classes)}
    found = {split: [] for split in splits}
    with tarfile.open(tarball, 'r:gz') as tar:
        for member in tar:
            parts = member.name.split('/')
            if not member.isfile() or len(parts) != 3 or parts[0] not in found or parts[1] not in label_of:
                continue
            found[parts[0]].append((label_of[parts[1]], parts[2], tar.extractfile(member).read()))
    out = {}
    for split, items in found.items():
        items.sort(key=lambda item: item[:2])
        if per_class[split] is not None:
            kept, count = [], {}
            for item in items:
                count[item[0]] = count.get(item[0], 0) + 1
                if count[item[0]] <= per_class[split]:
                    kept.append(item)
            items = kept
        if not items:
            raise ValueError(f'{tarball}: no images of {list(classes)} in its {split}/ folder')
        out[split] = (np.stack([_decode(item[2]) for item in items]),
                      np.array([item[0] for item in items], dtype=np.int64))
    return out


def load_cifar10(tarball=TARBALL, cache=CACHE):
    """All of CIFAR-10 as uint8 arrays, decoded from ``tarball`` once and cached in ``cache`` (an .npz)."""
    if not osp.exists(cache):
        if not osp.exists(tarball):
            raise FileNotFoundError(f'{tarball} not found: it is the shared copy of CIFAR-10 '
                                    '(../shared/data/cifar10-jpeg.tar.gz next to the repository)')
        t0 = time.time()
        data = read_cifar10_tar(tarball)
        os.makedirs(osp.dirname(cache), exist_ok=True)
        tmp = f'{cache}.{os.getpid()}.tmp.npz'  # written whole, then renamed: a reader never sees half a file
        np.savez(tmp, train_x=data['train'][0], train_y=data['train'][1], test_x=data['test'][0],
                 test_y=data['test'][1])
        os.replace(tmp, cache)
        print(f'decoded {tarball} into {cache} in {time.time() - t0:.0f}s', flush=True)
    with np.load(cache) as npz:
        return {key: npz[key] for key in ('train_x', 'train_y', 'test_x', 'test_y')}


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """(N, 32, 32, 3) uint8 -> (N, 3, 32, 32) uint8 tensor (kept uint8: 4x less memory than float)."""
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))


def augment(padded: torch.Tensor, generator: torch.Generator, size=32) -> torch.Tensor:
    """Random ``size`` crops of a zero-padded uint8 batch (N, 3, size+2p, size+2p) and random horizontal flips:
    mmpretrain's RandomCrop(padding=p) + RandomFlip(prob=0.5), for a whole batch at once."""
    n, _, h, w = padded.shape
    oy = torch.randint(0, h - size + 1, (n, ), generator=generator)
    ox = torch.randint(0, w - size + 1, (n, ), generator=generator)
    flip = torch.rand(n, generator=generator) < 0.5
    ar = torch.arange(size)
    rows = (oy[:, None] + ar)[:, :, None]  # (n, size, 1)
    cols = ox[:, None] + ar  # (n, size)
    cols = torch.where(flip[:, None], cols.flip(1), cols)[:, None, :]  # (n, 1, size)
    # advanced indices around a slice: the result is (n, size, size, C)
    return padded[torch.arange(n)[:, None, None], :, rows, cols].permute(0, 3, 1, 2)


# ---------------------------------------------------------------- models
def build_classifier(config, ghost_overrides=None):
    """The mmpretrain ImageClassifier of ``config`` (random weights), with ``conv_cfg`` updated by
    ``ghost_overrides`` (e.g. ``dict(ratio=3, dw_size=3)``); returns (model, cfg)."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmengine.utils import import_modules_from_strings
    cfg = Config.fromfile(osp.join(ROOT, config) if not osp.isabs(config) else config)
    if ghost_overrides:
        cfg.model.backbone.conv_cfg.update(ghost_overrides)
    if cfg.get('custom_imports'):
        import_modules_from_strings(**cfg.custom_imports)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    from mmengine.logging import MMLogger
    from mmpretrain.registry import MODELS
    model = MODELS.build(cfg.model)
    # init_weights() reports every parameter's initialisation at INFO level: a quiet logger for it
    MMLogger.get_instance('cifar_ghost_quiet', log_level='WARNING')
    model.init_weights()
    return model, cfg


def complexity(model, shape=(3, 32, 32)):
    """(FLOPs as multiply-adds, params) of the whole classifier at 1xCxHxW, by mmengine's counter."""
    from mmengine.analysis import get_model_complexity_info
    model = copy.deepcopy(model).eval()
    info = get_model_complexity_info(model, input_shape=shape, show_table=False, show_arch=False)
    return int(info['flops']), int(info['params'])


# ---------------------------------------------------------------- training
def default_recipe(epochs, train_images, seed=0):
    return dict(epochs=epochs, train_images=train_images, batch_size=128, optimizer='SGD', nesterov=True,
                momentum=0.9, max_lr=0.2, weight_decay=5e-4, schedule='one-cycle (linear warm-up 15%, cosine)',
                label_smoothing=0.1, augmentation='RandomCrop(32, padding=4) + RandomFlip(0.5), in torch',
                seed=seed)


def _param_groups(model, weight_decay):
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (decay if param.ndim > 1 else no_decay).append(param)  # conv/linear weights vs norms and biases
    return [dict(params=decay, weight_decay=weight_decay), dict(params=no_decay, weight_decay=0.0)]


def normalizer(cfg):
    """uint8 batch -> normalised float batch, with the mean/std of the config's data preprocessor."""
    prep = cfg.model.get('data_preprocessor') or cfg.data_preprocessor
    mean = torch.tensor(prep['mean'], dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(prep['std'], dtype=torch.float32).view(1, 3, 1, 1)
    return lambda x: (x.float() - mean) / std


@torch.no_grad()
def evaluate(model, images, labels, normalize, batch_size=500, channels_last=True):
    """Top-1 (%) of ``model`` on uint8 (N, 3, 32, 32) ``images``."""
    model.eval()
    correct = 0
    for i in range(0, len(images), batch_size):
        x = normalize(images[i:i + batch_size]).contiguous(
            memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        correct += (model(x, mode='tensor').argmax(1) == labels[i:i + batch_size]).sum().item()
    return 100.0 * correct / len(images)


def train(model, normalize, data, recipe, state_path=None, log=print, log_interval=50, channels_last=True):
    """Train ``model`` (called as ``model(x, mode='tensor')`` -> logits, as mmpretrain's ImageClassifier) with
    ``recipe`` on ``data`` (uint8 tensors ``train_x/train_y/test_x/test_y``); ``normalize`` maps a uint8 batch to
    the model's input; ``channels_last`` picks the memory format (speed only: the same arithmetic). Returns the
    run's record (top-1 on the test images, times, per-epoch history).

    The data order and crops of epoch ``e`` come from a generator seeded with (seed, e), so a run resumed from
    its per-epoch state file continues exactly as it would have.
    """
    train_x, train_y = data['train_x'][:recipe['train_images']], data['train_y'][:recipe['train_images']]
    padded = F.pad(train_x, (4, 4, 4, 4))  # zeros, as RandomCrop(padding=4)'s default pad_val=0
    n, bs = len(train_x), recipe['batch_size']
    steps_per_epoch = n // bs  # drop the last partial batch: every step has the same batch statistics
    total_steps = steps_per_epoch * recipe['epochs']
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(_param_groups(model, recipe['weight_decay']), lr=recipe['max_lr'],
                                momentum=recipe['momentum'], nesterov=recipe['nesterov'])
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=recipe['max_lr'], total_steps=total_steps, pct_start=0.15, anneal_strategy='cos',
        div_factor=25.0, final_div_factor=1e3, three_phase=False, cycle_momentum=False)
    history, start_epoch, train_time = [], 0, 0.0
    if state_path and osp.exists(state_path):
        state = torch.load(state_path, map_location='cpu')
        if state['recipe'] == recipe:
            model.load_state_dict(state['model'])
            optimizer.load_state_dict(state['optimizer'])
            scheduler.load_state_dict(state['scheduler'])
            history, start_epoch, train_time = state['history'], state['epoch'], state['train_time']
            log(f'  resumed after epoch {start_epoch}')
    for epoch in range(start_epoch, recipe['epochs']):
        model.train()
        generator = torch.Generator().manual_seed(recipe['seed'] * 1000 + epoch)
        order = torch.randperm(n, generator=generator)
        t0 = time.time()
        loss_sum = correct = 0.0
        for step in range(steps_per_epoch):
            index = order[step * bs:(step + 1) * bs]
            # augment() returns an NHWC-strided view: make the batch's memory format the chosen one explicitly
            x = normalize(augment(padded[index], generator)).contiguous(
                memory_format=torch.channels_last if channels_last else torch.contiguous_format)
            y = train_y[index]
            logits = model(x, mode='tensor')
            loss = F.cross_entropy(logits, y, label_smoothing=recipe['label_smoothing'])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            loss_sum += loss.item()
            correct += (logits.argmax(1) == y).sum().item()
            if log_interval and step % log_interval == 0:
                log(f'  epoch {epoch + 1} step {step}/{steps_per_epoch} loss {loss.item():.3f} '
                    f'lr {scheduler.get_last_lr()[0]:.4f} ({time.time() - t0:.0f}s)')
        epoch_time = time.time() - t0
        train_time += epoch_time
        history.append(dict(epoch=epoch + 1, loss=round(loss_sum / steps_per_epoch, 4),
                            train_top1=round(100.0 * correct / (steps_per_epoch * bs), 2),
                            seconds=round(epoch_time, 1)))
        log(f'  epoch {epoch + 1}/{recipe["epochs"]}: {history[-1]}')
        if state_path:
            os.makedirs(osp.dirname(state_path), exist_ok=True)
            torch.save(dict(recipe=recipe, model=model.state_dict(), optimizer=optimizer.state_dict(),
                            scheduler=scheduler.state_dict(), history=history, epoch=epoch + 1,
                            train_time=train_time), state_path + '.tmp')
            os.replace(state_path + '.tmp', state_path)
    t0 = time.time()
    top1 = evaluate(model, data['test_x'], data['test_y'], normalize, channels_last=channels_last)
    return dict(top1=round(top1, 2), train_seconds=round(train_time, 1),
                eval_seconds=round(time.time() - t0, 1), history=history)


# ---------------------------------------------------------------- driver
def _load_results(path):
    if osp.exists(path):
        with open(path) as f:
            return json.load(f)
    return dict(phases={})


def _save_results(results, path):
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path + '.tmp', 'w') as f:
        json.dump(results, f, indent=2)
    os.replace(path + '.tmp', path)


def _record_run(path, phase, recipe, name, result):
    """Add one finished run to the JSON on disk (re-read under a lock: several processes may share it)."""
    import fcntl
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path + '.lock', 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        results = _load_results(path)
        record = results['phases'].setdefault(phase, dict(recipe=recipe, runs={}))
        if record['recipe'] != recipe:
            record.update(recipe=recipe, runs={})
        record['runs'][name] = result
        _save_results(results, path)
        return results


def run_phase(phase, runs, recipe, data, results, out, log=print, only=None):
    record = results['phases'].setdefault(phase, dict(recipe=recipe, runs={}))
    if record['recipe'] != recipe:  # another budget: the old results do not compare with the new ones
        log(f'{phase}: recipe changed, discarding its {len(record["runs"])} earlier runs')
        record.update(recipe=recipe, runs={})
    for name, config, overrides in runs:
        if only and name not in only:
            continue
        if name in record['runs']:
            log(f'{phase}/{name}: done earlier (top-1 {record["runs"][name]["top1"]}%), skipped')
            continue
        torch.manual_seed(recipe['seed'])  # the same initialisation stream for every network
        model, cfg = build_classifier(config, overrides)
        flops, params = complexity(model)
        log(f'{phase}/{name}: {config} {overrides or ""} params {params / 1e6:.3f}M FLOPs {flops / 1e6:.1f}M')
        state_path = osp.join(WORK_DIR, f'{phase}_{name}.pth')
        channels_last = faster_memory_format(model, log=log)
        result = train(model, normalizer(cfg), data, recipe, state_path=state_path, log=log,
                       channels_last=channels_last)
        result.update(config=config, conv_cfg=cfg.model.backbone.get('conv_cfg'), params=params, flops=flops,
                      torch=torch.__version__, threads=torch.get_num_threads(),
                      memory_format='channels_last' if channels_last else 'contiguous')
        record['runs'][name] = result
        record = _record_run(out, phase, recipe, name, result)['phases'][phase]
        log(f'{phase}/{name}: top-1 {result["top1"]}% in {result["train_seconds"]:.0f}s')
        if osp.exists(state_path):
            os.remove(state_path)
    return record


def summary_rows(record, reference='plain'):
    """Markdown table rows (name, params, FLOPs, ratios to ``reference``, top-1, delta, wall time)."""
    runs = record['runs']
    ref = runs.get(reference)
    rows = ['| run | conv_cfg | params | FLOPs | params / plain | FLOPs / plain | top-1 (%) | vs plain | train time |',
            '|---|---|---|---|---|---|---|---|---|']
    for name, r in runs.items():
        conv = r.get('conv_cfg') or {}
        conv_txt = f"s={conv['ratio']}, d={conv['dw_size']}" if conv else 'plain conv'
        ratio = (lambda k: f'{r[k] / ref[k]:.1%}') if ref else (lambda k: '')
        delta = f"{r['top1'] - ref['top1']:+.2f}" if ref else ''
        rows.append(f"| {name} | {conv_txt} | {r['params'] / 1e6:.3f}M | {r['flops'] / 1e6:.1f}M | "
                    f"{ratio('params')} | {ratio('flops')} | {r['top1']:.2f} | {delta} | "
                    f"{r['train_seconds'] / 60:.1f} min |")
    return rows


def step_seconds(model, channels_last, batches=3, batch_size=128):
    """Median seconds of a training step of ``model`` (a deep copy: the model itself is not trained) on random
    data, after one warm-up step."""
    model = copy.deepcopy(model).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch_size, 3, 32, 32)
    x = x.contiguous(memory_format=torch.channels_last) if channels_last else x
    with torch.no_grad():
        num_classes = model(x[:2], mode='tensor').shape[1]
    y = torch.randint(0, num_classes, (batch_size, ))
    times = []
    for _ in range(batches + 1):
        t0 = time.time()
        loss = F.cross_entropy(model(x, mode='tensor'), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        times.append(time.time() - t0)
    return sorted(times[1:])[len(times[1:]) // 2]  # the median: other processes share the cores


def faster_memory_format(model, log=print):
    """True if ``model`` trains faster in channels_last than in contiguous (NCHW) memory format here.

    Which one wins depends on the network and the torch build: on torch 2.1's CPU kernels channels_last makes
    the plain ResNet-20 ~25% faster and its Ghost version (depthwise convs) ~2x slower; torch 2.13 has no such
    penalty. The choice changes the speed only, not the arithmetic, so each run uses its faster format.
    """
    torch.manual_seed(0)
    nchw, nhwc = step_seconds(model, False), step_seconds(model, True)
    log(f'  step time: contiguous {nchw:.2f}s, channels_last {nhwc:.2f}s')
    return nhwc < nchw


def time_networks(configs, batch_size=128, log=print):
    """Seconds per training step (batch ``batch_size``) of each config's network in both memory formats, and
    the epoch time it implies: the measurement behind the choice of network and budget."""
    out = {}
    for config in configs:
        model, _ = build_classifier(config)
        steps = {fmt: step_seconds(model, fmt == 'channels_last', batch_size=batch_size)
                 for fmt in ('contiguous', 'channels_last')}
        out[config] = steps
        log(config + ': ' + ', '.join(f'{fmt} {s:.2f} s/step = {s * 50000 / batch_size / 60:.1f} min/epoch'
                                      for fmt, s in steps.items()))
    return out


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--phase', choices=('main', 'ablations', 'all'), default='all')
    parser.add_argument('--epochs', type=int, default=5, help='main pair: epochs over all 50,000 images')
    parser.add_argument('--ablation-epochs', type=int, default=3, help='ablations: epochs')
    parser.add_argument('--only', nargs='+', metavar='RUN',
                        help='run only these runs of the phase(s) (e.g. plain ghost-s2-d3): several processes, '
                        'one core each, can share the runs and the JSON')
    parser.add_argument('--ablation-train', type=int, default=15000,
                        help='ablations: the first N training images of a fixed shuffle')
    parser.add_argument('--threads', type=int, default=1,
                        help='torch threads (default 1: on a shared 2-core machine two 1-thread processes, '
                        '--only, use the cores better than one 2-thread one)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--out', default=OUT, help='results JSON (default: benchmarks/results/cifar_ghost.json)')
    parser.add_argument('--tarball', default=TARBALL)
    parser.add_argument('--suffix', default='',
                        help='appended to the phase names in the JSON ("main", "ablations"), so that runs with '
                        'another budget (e.g. --epochs 12 --suffix _12ep) are kept next to the others')
    parser.add_argument('--report', action='store_true',
                        help='only print the markdown tables of the results in --out and exit')
    parser.add_argument('--time', nargs='*', metavar='CONFIG',
                        help='only time a few training steps of these configs (default: the CIFAR-10 configs '
                        'this benchmark could use) and exit')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.report:
        for phase, record in _load_results(args.out)['phases'].items():
            print(f'\n{phase}: {json.dumps(record["recipe"])}')
            print('\n'.join(summary_rows(record)))
        return
    if args.time is not None:
        time_networks(args.time or (PLAIN_CONFIG, GHOST_CONFIG, 'configs/cifar10/resnet56_cifar10.py',
                                    'configs/cifar10/vgg16_cifar10.py', 'configs/cifar10/ghost-vgg16-s2_cifar10.py'))
        return
    raw = load_cifar10(args.tarball)
    # a fixed shuffle, so that a training subset (the ablations') has every class in proportion
    perm = torch.randperm(len(raw['train_y']), generator=torch.Generator().manual_seed(12345))
    data = dict(train_x=to_tensor(raw['train_x'])[perm], train_y=torch.from_numpy(raw['train_y'])[perm],
                test_x=to_tensor(raw['test_x']), test_y=torch.from_numpy(raw['test_y']))
    results = _load_results(args.out)
    results['command'] = 'benchmarks/cifar_ghost.py ' + ' '.join(argv if argv is not None else sys.argv[1:])
    phases = []
    if args.phase in ('main', 'all'):
        phases.append(('main' + args.suffix, MAIN_RUNS,
                       default_recipe(args.epochs, len(data['train_y']), args.seed)))
    if args.phase in ('ablations', 'all'):
        phases.append(('ablations' + args.suffix, ABLATION_RUNS,
                       default_recipe(args.ablation_epochs, args.ablation_train, args.seed)))
    for phase, runs, recipe in phases:
        record = run_phase(phase, runs, recipe, data, results, args.out, only=args.only)
        print(f'\n{phase}: {json.dumps(recipe)}')
        print('\n'.join(summary_rows(record)), flush=True)


if __name__ == '__main__':
    main()
