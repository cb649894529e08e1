"""Install mmghost: GhostNet as an MMDetection 3.x backbone plugin."""
import os.path as osp

from setuptools import find_packages, setup


def read_version():
    namespace = {}
    with open(osp.join(osp.dirname(__file__), 'mmghost', 'version.py')) as f:
        exec(f.read(), namespace)
    return namespace['__version__']


setup(
    name='mmghost',
    version=read_version(),
    description='GhostNet (CVPR 2020) as a first-class MMDetection 3.x backbone',
    long_description=open(osp.join(osp.dirname(__file__), 'README.md')).read()
    if osp.exists(osp.join(osp.dirname(__file__), 'README.md')) else '',
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    packages=find_packages(include=['mmghost', 'mmghost.*']),
    # The floors that are tested (`make test` runs the suite on both stacks): Python 3.11; torch 2.1.2 and 2.13.0.
    # mmghost uses nothing newer than Python 3.8 knowingly, but only 3.11 is tested, so only 3.11 is claimed.
    python_requires='>=3.11',
    # Ranges, not pins: a user's own environment decides. torch (>= 2.1, see mmghost/utils/compat.py, which
    # refuses older ones with a clear message) is deliberately absent so that pip never replaces the user's
    # build (a bare `torch` requirement can pull a multi-GB CUDA wheel); mmcv needs it installed first anyway.
    # mmghost.deploy (the ONNX Runtime detector) needs none of these: on a machine without torch install it with
    # `pip install --no-deps mmghost` and `pip install -r requirements/runtime.txt` (numpy, onnxruntime, opencv).
    install_requires=[
        'mmengine>=0.10.0,<1.0',
        'mmcv>=2.0.0,<2.2.0',
        'mmdet>=3.3.0,<3.4.0',
        'numpy',
    ],
    extras_require={
        'tests': ['pytest>=7', 'pycocotools>=2.0.7', 'onnx>=1.15', 'onnxruntime>=1.17', 'safetensors>=0.4'],
        'onnx': ['onnx>=1.15', 'onnxruntime>=1.17'],
        'safetensors': ['safetensors>=0.4'],
        'tensorboard': ['tensorboard'],
        'timm': ['timm>=1.0'],  # parity checks against timm's GhostNets; needs torchvision
        # tools/deploy.py: mmdeploy pins protobuf<=3.20.2, which onnx 1.18+ and onnxruntime 1.27+ refuse (its own
        # venv in `make test`: requirements/constraints-deploy.txt).
        'deploy': ['mmdeploy==1.3.1', 'onnx>=1.16,<1.18', 'protobuf<=3.20.2', 'onnxruntime>=1.17,<1.27', 'ml_dtypes'],
    },
    classifiers=[
        'Programming Language :: Python :: 3.11',
        'Framework :: PyTorch',
        'License :: OSI Approved :: Apache Software License',
        'Topic :: Scientific/Engineering :: Image Recognition',
    ],
    zip_safe=False,
)
