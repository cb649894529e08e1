"""The inference engines behind ``mmghost.deploy.Detector``: ONNX Runtime and OpenVINO, one interface.

An engine runs one network file on one input batch and returns every output, in the graph's order (for a
``tools/deploy.py`` folder: ``dets`` (N, K, 5) and ``labels`` (N, K)). Each imports its runtime only when built,
so the other need not be installed. Neither imports torch.
"""
import collections
import os.path as osp
from typing import List, Optional, Sequence, Tuple

import numpy as np

# The network files of a folder written by tools/deploy.py, per engine and precision. --int8 writes the quantised
# ONNX next to the float one; --backend openvino writes OpenVINO's IR (end2end.xml + end2end.bin) of the float one.
MODEL_FILES = {'fp32': 'end2end.onnx', 'int8': 'end2end_int8.onnx'}
OPENVINO_FILES = {'fp32': 'end2end.xml'}


class OnnxRuntimeEngine:
    """An ONNX file (``end2end.onnx``, ``end2end_int8.onnx``...) in an ONNX Runtime session.

    Args:
        model_file: The ONNX file.
        num_threads: Intra-op threads (None: ONNX Runtime's default, one per core).
        providers: Execution providers (None: CPU).
    """

    name = 'onnxruntime'

    def __init__(self, model_file: str, num_threads: Optional[int] = None,
                 providers: Optional[Sequence[str]] = None):
        import onnxruntime as ort
        options = ort.SessionOptions()
        if num_threads is not None:
            options.intra_op_num_threads = num_threads
        self.model_file = model_file
        self.session = ort.InferenceSession(model_file, options, providers=list(providers or ['CPUExecutionProvider']))
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]

    def __call__(self, batch: np.ndarray) -> List[np.ndarray]:
        return self.session.run(None, {self.input_name: batch})


class OpenVINOEngine:
    """OpenVINO's IR (``end2end.xml``), or the ONNX file itself, compiled for the CPU.

    fp32 stays fp32: OpenVINO would otherwise run in bf16 on CPUs that have bf16 instructions
    (``INFERENCE_PRECISION_HINT``), which changes the boxes. Latency mode (one stream), ``num_threads`` threads.

    A graph with dynamic input sizes (``tools/deploy.py --dynamic``) is compiled once per input shape it meets,
    with that shape fixed (``Model.reshape``; the last ``cache_size`` shapes kept): measured, that ran SSDLite end
    to end in 0.90-0.92x the time of the dynamic graph and the backbones alike (docs/deploy.md#openvino); each new
    shape costs a compilation (seconds for a RetinaNet). A graph with a fixed input (``--shape``) is compiled once.
    ``static_shapes=False`` compiles the dynamic graph as it is, once for every size: for inputs of many sizes.

    Args:
        model_file: An IR (``end2end.xml``) or an ONNX file (converted when read).
        num_threads: Inference threads (None: OpenVINO's default, one per physical core).
        static_shapes: Compile a dynamic graph per input shape. Default: True.
        cache_size: How many compiled input shapes to keep. Default: 4.
    """

    name = 'openvino'

    def __init__(self, model_file: str, num_threads: Optional[int] = None, static_shapes: bool = True,
                 cache_size: int = 4):
        import openvino as ov
        if cache_size < 1:
            raise ValueError(f'cache_size must be at least 1, got {cache_size}')
        self.model_file = model_file
        self.core = ov.Core()
        self.model = self.core.read_model(model_file)
        self.output_names = [output.get_any_name() for output in self.model.outputs]
        self.config = {'PERFORMANCE_HINT': 'LATENCY', 'INFERENCE_PRECISION_HINT': 'f32'}
        if num_threads is not None:
            self.config['INFERENCE_NUM_THREADS'] = int(num_threads)
        self.reshape = static_shapes and self.model.is_dynamic()
        self.cache_size = cache_size
        self._compiled = collections.OrderedDict()  # input shape (or None: the graph as it is) -> infer request
        if not self.reshape:
            self._request(None)

    def _request(self, shape: Optional[Tuple[int, ...]]):
        request = self._compiled.get(shape)
        if request is None:
            model = self.model
            if shape is not None:
                model = self.model.clone()
                model.reshape({model.inputs[0].get_any_name(): list(shape)})
            request = self.core.compile_model(model, 'CPU', self.config).create_infer_request()
            self._compiled[shape] = request
            while len(self._compiled) > self.cache_size:
                self._compiled.popitem(last=False)
        else:
            self._compiled.move_to_end(shape)
        return request

    def __call__(self, batch: np.ndarray) -> List[np.ndarray]:
        request = self._request(tuple(batch.shape) if self.reshape else None)
        request.infer({0: batch})
        # The request's output tensors are reused by its next inference: copy them out.
        return [request.get_output_tensor(i).data.copy() for i in range(len(self.output_names))]


ENGINES = {'onnxruntime': OnnxRuntimeEngine, 'openvino': OpenVINOEngine}


def model_file(model_dir: str, engine: str, precision: str) -> str:
    """The network file ``engine`` runs at ``precision`` in ``model_dir``: ONNX Runtime the ONNX files; OpenVINO
    its IR where ``tools/deploy.py --backend openvino`` wrote one, else the ONNX file (OpenVINO reads ONNX too)."""
    if engine not in ENGINES:
        raise ValueError(f'engine must be one of {sorted(ENGINES)}, got {engine!r}')
    if precision not in MODEL_FILES:
        raise ValueError(f'precision must be one of {sorted(MODEL_FILES)}, got {precision!r}')
    if engine == 'openvino' and precision in OPENVINO_FILES:
        ir = osp.join(model_dir, OPENVINO_FILES[precision])
        if osp.isfile(ir):
            return ir
    return osp.join(model_dir, MODEL_FILES[precision])
