"""GhostNet's deploy forms against mmdet's MobileNetV2 on ONNX Runtime and OpenVINO, interleaved in one process.

    PYTHONPATH=$PWD OMP_NUM_THREADS=1 .venv-deploy/bin/python benchmarks/form_latency.py               # both cases
    PYTHONPATH=$PWD .venv-deploy/bin/python benchmarks/form_latency.py --cases 320 --repeats 5 --warmup 1

Models, exports and cases are those of ``benchmarks/profile_ops.py`` (GhostNet-1.1x at 800x1344 and 1.0x at 320,
``out_indices=(2, 3, 4)``, NCHW deploy mode in each ``--forms`` entry; MobileNetV2 with ``(2, 4, 6)``, BNs folded;
opset 13, static shape). Runtimes, 1 thread each, fp32: ONNX Runtime (default graph optimisations) and OpenVINO
(``PERFORMANCE_HINT=LATENCY``, ``INFERENCE_PRECISION_HINT=f32``) if importable. After ``--warmup`` runs of every
(model, runtime), ``--repeats`` rounds run each once, with a 0.1 s pause before each run (the other runtime's
worker threads spin-wait after a run), so drift of a shared machine hits every model alike: the ratios are the
figures to read. Medians per (model, runtime); ratios to MobileNetV2 on the same runtime and best against best.

Writes ``benchmarks/results/form_latency.json``. Goals (issue 26): GhostNet-1.1x ORT <= 0.80x MobileNetV2's ORT at
800x1344; best against best <= 0.65x there and <= 0.60x for 1.0x at 320.
"""
import argparse
import json
import os
import os.path as osp
import sys
import tempfile
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.benchmark import summarize  # noqa: E402
from benchmarks.deploy_benchmark import PAUSE_S, cpu_seconds  # noqa: E402
from benchmarks.profile_ops import (CASES, build_models, environment, export_onnx, openvino_available,  # noqa: E402
                                    openvino_model, ort_session)

GOALS = {('800x1344', 'ort'): 0.80, ('800x1344', 'best'): 0.65, ('320', 'best'): 0.60}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--cases', nargs='+', default=list(CASES), choices=list(CASES))
    parser.add_argument('--forms', nargs='+', default=['plain', 'padded', 'split'])
    parser.add_argument('--runtimes', nargs='+', default=['ort', 'openvino'], choices=['ort', 'openvino'])
    parser.add_argument('--repeats', type=int, default=15)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--out', default=osp.join(ROOT, 'benchmarks', 'results', 'form_latency.json'))
    return parser.parse_args(argv)


def runners(path, x, runtimes):
    out = {}
    if 'ort' in runtimes:
        session = ort_session(path)
        name = session.get_inputs()[0].name
        out['ort'] = lambda: session.run(None, {name: x})
    if 'openvino' in runtimes:
        request = openvino_model(path).create_infer_request()
        out['openvino'] = lambda: request.infer({0: x})
    return out


def time_interleaved(cases, repeats, warmup):
    times = {key: [] for key in cases}
    for fn in cases.values():
        for _ in range(warmup):
            fn()
    before = cpu_seconds()
    for _ in range(repeats):
        for key, fn in cases.items():
            time.sleep(PAUSE_S)
            start = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - start)
    after = cpu_seconds()
    others = None
    if before[0] is not None:
        busy = (after[0] - before[0]) - (after[1] - before[1])
        others = round(max(busy, 0.) / ((after[2] - before[2] - PAUSE_S * repeats * len(cases)) * os.cpu_count()), 3)
    return {key: summarize(t) for key, t in times.items()}, others


def ratios(case, timings):
    """Each GhostNet (model, runtime) against MobileNetV2 on the same runtime, and each GhostNet form's best
    runtime against MobileNetV2's best."""
    mobilenet = {rt: t['median_ms'] for (name, rt), t in timings.items() if name == 'mobilenetv2'}
    best_mobilenet = min(mobilenet.values())
    out = {}
    for (name, runtime), t in timings.items():
        if name != 'mobilenetv2':
            out[f'{name}/{runtime}'] = round(t['median_ms'] / mobilenet[runtime], 3)
    for name in {n for n, _ in timings if n != 'mobilenetv2'}:
        best = min(t['median_ms'] for (n, _), t in timings.items() if n == name)
        out[f'{name}/best'] = round(best / best_mobilenet, 3)
    return out


def main(argv=None):
    args = parse_args(argv)
    import numpy as np
    import torch
    torch.set_num_threads(1)
    import mmghost  # noqa: F401
    runtimes = [r for r in args.runtimes if r != 'openvino' or openvino_available()]
    results = dict(environment=environment(), command=' '.join(sys.argv), goals={f'{c}/{r}': g for (c, r), g in
                                                                                 GOALS.items()}, cases={})
    with tempfile.TemporaryDirectory() as tmp:
        for case in args.cases:
            shape = CASES[case]['shape']
            x = np.random.default_rng(0).standard_normal((1, 3, *shape)).astype(np.float32)
            cases = {}
            for name, (_, model) in build_models(case, args.forms).items():
                path = export_onnx(model, shape, osp.join(tmp, f'{case}-{name}.onnx'))
                for runtime, fn in runners(path, x, runtimes).items():
                    cases[(name, runtime)] = fn
            timings, others = time_interleaved(cases, args.repeats, args.warmup)
            results['cases'][case] = dict(
                shape=list(shape), others_cpu_share=others,
                median_ms={f'{n}/{r}': round(t['median_ms'], 2) for (n, r), t in timings.items()},
                min_ms={f'{n}/{r}': round(t['min_ms'], 2) for (n, r), t in timings.items()},
                ratio_to_mobilenetv2=ratios(case, timings))
            print(json.dumps({case: results['cases'][case]}, indent=1), flush=True)
    os.makedirs(osp.dirname(args.out), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(results, f, indent=1)
    print(f'wrote {args.out}')


if __name__ == '__main__':
    main()
