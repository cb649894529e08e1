# mmdeploy 1.3.1 deploy config: a whole mmdet detector (pre-NMS head, box decoding and NMS) as one ONNX graph for
# ONNX Runtime, any batch size and any image size (what tools/deploy.py uses by default).
#
# The image is resized keeping its aspect ratio and padded as the model config's test pipeline does, so the ONNX
# model sees what the PyTorch model sees and keeps its accuracy. Outputs: `dets` (batch, N, 5: x1, y1, x2, y2, score
# in the network input's pixels) and `labels` (batch, N). tools/deploy.py fills `post_processing` from the model
# config's test_cfg (score_thr, nms iou, nms_pre, max_per_img) so the exported NMS keeps the same settings.
codebase_config = dict(
    type='mmdet',
    task='ObjectDetection',
    model_type='end2end',
    post_processing=dict(
        score_threshold=0.05,
        confidence_threshold=0.005,  # for YOLO
        iou_threshold=0.5,
        max_output_boxes_per_class=200,
        pre_top_k=5000,
        keep_top_k=100,
        background_label_id=-1))
onnx_config = dict(
    type='onnx',
    export_params=True,
    keep_initializers_as_inputs=False,
    opset_version=11,
    save_file='end2end.onnx',
    input_names=['input'],
    output_names=['dets', 'labels'],
    input_shape=None,  # from the model config's test pipeline
    optimize=True,
    dynamic_axes=dict(
        input=dict({0: 'batch', 2: 'height', 3: 'width'}),
        dets=dict({0: 'batch', 1: 'num_dets'}),
        labels=dict({0: 'batch', 1: 'num_dets'})))
backend_config = dict(type='onnxruntime')
