# mmdeploy 1.3.1 deploy config: the detector as one ONNX graph with a fixed input size (batch 1), for runtimes and
# quantisers that want static shapes. tools/deploy.py --shape H W sets `input_shape` (mmdeploy's order is W, H).
#
# mmdeploy's convention for a fixed input: every image is *stretched* to it (the test pipeline's Resize gets
# keep_ratio=False), so objects in images of another aspect ratio change shape; use the dynamic config when
# accuracy on mixed aspect ratios matters.
_base_ = ['./detection_onnxruntime_dynamic.py']
onnx_config = dict(input_shape=None, dynamic_axes=None)
