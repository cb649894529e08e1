"""Pascal VOC XML files (one per image, as labelImg and CVAT write them) with classes of your own -> one COCO file.

mmdet's ``tools/dataset_converters/pascal_voc.py`` converts the VOC dataset itself (a VOCdevkit folder, VOC's 20
classes). This tool takes any XML files and any class names, with mmdet's conventions for the numbers: VOC's
1-based pixel corners become COCO's ``[xmin - 1, ymin - 1, xmax - xmin, ymax - ymin]``, and a ``difficult``
object becomes ``iscrowd: 1`` (COCO's evaluation neither rewards nor penalises detecting it).

    python tools/voc_to_coco.py XML_OR_FOLDER [...] --out train.json [--images DIR] [--classes NAME ...]

Each image is ``DIR/<filename>`` of its XML (DIR: the XML's own folder by default); where that file is missing, a
file of the same name with another image extension is taken (an XML that names ``a.tif`` for ``a.png``), and the
tool says so. The image size is read from the XML's ``<size>``, or from the image when that is missing or 0.
Categories: ``--classes`` in that order (objects of other names are left out, with a count), else every name found,
in the order met. Then: ``python -m mmghost.configs NAME --new my.py --train train.json DIR --val ...``
(docs/custom_dataset.md).
"""
import argparse
import glob
import json
import os.path as osp
import sys
import xml.etree.ElementTree as ET
from collections import Counter

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp', '.JPG', '.JPEG', '.PNG')


def xml_files(paths):
    files = []
    for path in paths:
        files += sorted(glob.glob(osp.join(path, '*.xml'))) if osp.isdir(path) else [path]
    return files


def find_image(folder, name):
    """``folder/name``, or a file of that stem with another image extension; None if neither exists."""
    path = osp.join(folder, name)
    if osp.isfile(path):
        return name
    stem = osp.splitext(name)[0]
    for ext in IMAGE_EXTENSIONS:
        if osp.isfile(osp.join(folder, stem + ext)):
            return stem + ext
    return None


def _number(node, tag):
    return float(node.find(tag).text)


def convert(xmls, images=None, classes=None, log=print):
    """A COCO detection dict for the VOC XML files ``xmls``; ``images``: the image folder (default: each XML's)."""
    categories = list(classes or [])
    fixed = classes is not None
    coco = dict(images=[], annotations=[], categories=[])
    left_out = Counter()
    for xml in xmls:
        root = ET.parse(xml).getroot()
        folder = images or osp.dirname(xml)
        name = root.findtext('filename') or osp.splitext(osp.basename(xml))[0] + '.jpg'
        found = find_image(folder, name)
        if found is None:
            raise FileNotFoundError(f'{xml}: image {name} not found in {folder} (--images names the folder)')
        if found != name:
            log(f'{xml}: names {name}; using {found}, found beside it')
        size = root.find('size')
        width = int(float(size.findtext('width') or 0)) if size is not None else 0
        height = int(float(size.findtext('height') or 0)) if size is not None else 0
        if not width or not height:
            import cv2
            image = cv2.imread(osp.join(folder, found))
            if image is None:
                raise ValueError(f'{xml}: no <size> and {osp.join(folder, found)} cannot be read')
            height, width = image.shape[:2]
        image_id = len(coco['images']) + 1
        coco['images'].append(dict(id=image_id, file_name=found, width=width, height=height))
        for obj in root.findall('object'):
            label = obj.findtext('name', '').strip()
            if label not in categories:
                if fixed:
                    left_out[label] += 1
                    continue
                categories.append(label)
            box = obj.find('bndbox')
            x1, y1 = _number(box, 'xmin') - 1, _number(box, 'ymin') - 1  # VOC is 1-based, as mmdet reads it
            w, h = _number(box, 'xmax') - _number(box, 'xmin'), _number(box, 'ymax') - _number(box, 'ymin')
            coco['annotations'].append(dict(
                id=len(coco['annotations']) + 1, image_id=image_id, category_id=categories.index(label) + 1,
                bbox=[x1, y1, w, h], area=w * h, iscrowd=int(obj.findtext('difficult', '0').strip() == '1')))
    coco['categories'] = [dict(id=i + 1, name=name) for i, name in enumerate(categories)]
    if left_out:
        log('left out (not in --classes): ' + ', '.join(f'{n} {name!r}' for name, n in left_out.items()))
    return coco


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('xml', nargs='+', help='VOC XML files, or folders of them')
    parser.add_argument('--out', required=True, help='the COCO file to write')
    parser.add_argument('--images', help='folder of the images (default: the folder of each XML file)')
    parser.add_argument('--classes', nargs='+', help='category names, in this order (default: as met)')
    args = parser.parse_args(argv)
    xmls = xml_files(args.xml)
    if not xmls:
        parser.error(f'no XML files in {args.xml}')
    try:
        coco = convert(xmls, args.images, args.classes)
    except (OSError, ValueError, ET.ParseError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    with open(args.out, 'w', encoding='utf-8') as f:
        json.dump(coco, f)
    counts = Counter(a['category_id'] for a in coco['annotations'])
    print(f"{args.out}: {len(coco['images'])} images, {len(coco['annotations'])} boxes; "
          + ', '.join(f"{c['name']} {counts[c['id']]}" for c in coco['categories']))
    return 0


if __name__ == '__main__':
    sys.exit(main())
