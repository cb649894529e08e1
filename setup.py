"""Install mmghost: GhostNet as an MMDetection 3.x backbone plugin."""
import os
import os.path as osp
import shutil

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

ROOT = osp.dirname(osp.abspath(__file__))
# What a wheel and an sdist carry as mmghost/.mim/, OpenMMLab's layout (mmdet 3.3's setup.py add_mim_extension):
# the configs for users' configs to build on (mmghost.configs finds them), and the model index.
MIM_FILES = ('configs', 'model-index.yml')
MIM_DIR = osp.join('mmghost', '.mim')
_IGNORE = shutil.ignore_patterns('__pycache__', '*.pyc')


def mim_source(name):
    """The repository's file or folder ``name``; in an unpacked sdist (no configs/ at the top) its copy in
    mmghost/.mim."""
    top = osp.join(ROOT, name)
    return top if osp.exists(osp.join(ROOT, 'configs')) else osp.join(ROOT, MIM_DIR, name)


def copy_mim_files(dest):
    """Fresh copies of MIM_FILES in ``dest`` (a previous build's copies are removed first, so that a config deleted
    from the repository is not shipped)."""
    for name in MIM_FILES:
        src, target = mim_source(name), osp.join(dest, name)
        if osp.islink(target) or osp.isfile(target):
            os.remove(target)
        elif osp.isdir(target):
            shutil.rmtree(target)
        os.makedirs(dest, exist_ok=True)
        if osp.isdir(src):
            shutil.copytree(src, target, ignore=_IGNORE)
        else:
            shutil.copyfile(src, target)


def link_mim_files():
    """An editable install: mmghost/.mim/<name> in the checkout are relative symlinks to the repository's files
    (mmdet's `develop` mode), so tools that look in .mim see the configs being edited. mmghost.configs itself uses
    the checkout's configs/ directly. Where symlinks fail (Windows without the privilege), copies."""
    if not osp.isdir(osp.join(ROOT, 'configs')):
        return  # an unpacked sdist: its mmghost/.mim holds the only copies
    dest = osp.join(ROOT, MIM_DIR)
    os.makedirs(dest, exist_ok=True)
    for name in MIM_FILES:
        target = osp.join(dest, name)
        if osp.islink(target) or osp.isfile(target):
            os.remove(target)
        elif osp.isdir(target):
            shutil.rmtree(target)
        try:
            os.symlink(osp.relpath(osp.join(ROOT, name), dest), target)
        except OSError:
            copy_mim_files(dest)
            return


class BuildPyWithMim(build_py):
    """build_py that also puts MIM_FILES into the built package (a wheel, `pip install .`).

    setuptools >= 64 runs it with editable_mode for `pip install -e .` (PEP 660, which does not run `develop`, where
    mmdet 3.3's setup.py makes its symlinks): then the checkout gets the symlinks. An older setuptools' `develop`
    makes none, which mmghost.configs does not need: from a checkout it reads the repository's configs/."""

    def run(self):
        if not self.editable_mode:
            # An in-tree build (`pip wheel .`) reuses build/lib, and build_py never deletes there: a module removed
            # from the source would still be shipped.
            shutil.rmtree(osp.join(self.build_lib, 'mmghost'), ignore_errors=True)
        super().run()
        if self.editable_mode:
            link_mim_files()
        else:
            copy_mim_files(osp.join(self.build_lib, MIM_DIR))


class SdistWithMim(sdist):
    """The sdist carries MIM_FILES as mmghost/.mim/ (as mmdet's does); a wheel built from it copies them from
    there (see mim_source)."""

    def make_release_tree(self, base_dir, files):
        super().make_release_tree(base_dir, files)
        copy_mim_files(osp.join(base_dir, MIM_DIR))


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
    license_files=['LICENSE'],
    packages=find_packages(include=['mmghost', 'mmghost.*']),
    cmdclass={'build_py': BuildPyWithMim, 'sdist': SdistWithMim},
    # What `make test` runs the suite on: Python 3.10 (the torch 2.1.2 and mmdeploy stacks) and 3.11 (torch 2.13.0).
    # Untested, so not claimed: Python 3.8/3.9 (mmghost knowingly uses nothing newer than 3.8, but no stack runs
    # them) and 3.12+ (no stack runs them either); torch other than 2.1.2 and 2.13.0.
    python_requires='>=3.10',
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
        'deploy': ['mmdeploy==1.3.1', 'onnx>=1.16,<1.18', 'protobuf<=3.20.2', 'onnxruntime>=1.17,<1.27', 'ml_dtypes',
                   'openvino>=2023.1'],  # tools/deploy.py --backend openvino
    },
    classifiers=[
        'Programming Language :: Python :: 3',
        'Programming Language :: Python :: 3.10',
        'Programming Language :: Python :: 3.11',
        'Framework :: PyTorch',
        'License :: OSI Approved :: Apache Software License',
        'Topic :: Scientific/Engineering :: Image Recognition',
    ],
    zip_safe=False,
)
