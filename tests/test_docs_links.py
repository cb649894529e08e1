"""Every relative link in README.md, docs/*.md and CHANGELOG.md points at an existing file, every ``#anchor`` at a
heading.

Anchors follow GitHub's rule for heading ids: the heading's rendered text, lowercased, with every character that is
not a letter, digit, ``_``, ``-`` or space dropped, and spaces turned into ``-``; a repeated id gets ``-1``, ``-2``.
External links (``http(s)://``, ``mailto:``, any ``scheme:``) are not checked. Links inside fenced code blocks and
inline code are not links. Standard library only.
"""
import os.path as osp
import re
from glob import glob

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

FENCE = re.compile(r'^\s*(```|~~~)')
CODE_SPAN = re.compile(r'(`+)(.+?)\1')
# [text](target) and ![alt](target); an optional "title" after the target.
INLINE_LINK = re.compile(r'!?\[[^\]]*\]\(\s*<?([^)\s>]*)>?(?:\s+"[^"]*")?\s*\)')
REFERENCE_DEFINITION = re.compile(r'^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+"[^"]*")?\s*$')
HTML_LINK = re.compile(r'<(?:a|img)\b[^>]*?\b(?:href|src)\s*=\s*"([^"]*)"', re.IGNORECASE)
HTML_ANCHOR = re.compile(r'<[a-z]+\b[^>]*?\b(?:id|name)\s*=\s*"([^"]+)"', re.IGNORECASE)
ATX_HEADING = re.compile(r'^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$')
SETEXT_UNDERLINE = re.compile(r'^\s{0,3}(=+|-+)\s*$')
SCHEME = re.compile(r'^[a-zA-Z][a-zA-Z0-9+.-]*:')


def github_slug(heading):
    """The id GitHub gives a heading (before de-duplication), from its Markdown source text."""
    text = CODE_SPAN.sub(lambda m: m.group(2).strip(), heading)      # code spans render as their content
    text = re.sub(r'!?\[([^\]]*)\]\([^)]*\)', r'\1', text)           # links render as their text
    text = re.sub(r'<[^>]+>', '', text)                              # inline HTML tags render as nothing
    text = re.sub(r'(\*+|(?<!\w)_+|_+(?!\w))', '', text)             # emphasis markers (not snake_case)
    text = text.strip().lower()
    text = ''.join(c for c in text if c.isalnum() or c in '_- ')
    return text.replace(' ', '-')


def _lines_outside_code(text):
    """(line number, line) for every line that is not inside a fenced code block."""
    fenced = False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield number, line


def anchors(text):
    """Every anchor a Markdown page defines: heading ids (de-duplicated as GitHub does) and HTML id/name."""
    found, seen = set(), {}
    previous = ''
    for _, line in _lines_outside_code(text):
        heading = None
        match = ATX_HEADING.match(line)
        if match:
            heading = match.group(2)
        elif SETEXT_UNDERLINE.match(line) and previous.strip() and not previous.lstrip().startswith('|'):
            heading = previous.strip()
        if heading is not None:
            slug = github_slug(heading)
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            found.add(slug if count == 0 else f'{slug}-{count}')
        found.update(HTML_ANCHOR.findall(line))
        previous = line
    return found


def links(text):
    """(line number, target) for every link in a Markdown page, code excluded."""
    for number, line in _lines_outside_code(text):
        prose = CODE_SPAN.sub('``', line)
        targets = INLINE_LINK.findall(prose) + HTML_LINK.findall(prose)
        match = REFERENCE_DEFINITION.match(prose)
        if match:
            targets.append(match.group(1))
        for target in targets:
            yield number, target


def broken_links(paths, root=ROOT):
    """'file:line: target: why' for every relative link among ``paths`` that does not resolve."""
    problems, anchor_cache = [], {}

    def anchors_of(path):
        if path not in anchor_cache:
            with open(path, encoding='utf-8') as f:
                anchor_cache[path] = anchors(f.read())
        return anchor_cache[path]

    for path in paths:
        with open(path, encoding='utf-8') as f:
            text = f.read()
        where = osp.relpath(path, root)
        for number, target in links(text):
            if not target or SCHEME.match(target):
                continue
            file_part, _, anchor = target.partition('#')
            dest = osp.normpath(osp.join(osp.dirname(path), file_part)) if file_part else path
            if not osp.exists(dest):
                problems.append(f'{where}:{number}: {target}: no such file {osp.relpath(dest, root)}')
                continue
            if anchor and dest.endswith('.md') and anchor not in anchors_of(dest):
                problems.append(f'{where}:{number}: {target}: no heading with id "{anchor}" in '
                                f'{osp.relpath(dest, root)}')
    return problems


def doc_pages(root=ROOT):
    """README.md, docs/*.md and, where it exists, CHANGELOG.md."""
    changelog = [osp.join(root, 'CHANGELOG.md')] if osp.isfile(osp.join(root, 'CHANGELOG.md')) else []
    return [osp.join(root, 'README.md')] + sorted(glob(osp.join(root, 'docs', '*.md'))) + changelog


def test_readme_and_docs_pages_exist():
    pages = doc_pages()
    assert osp.isfile(pages[0])
    assert len(pages) > 1, 'no docs/*.md pages'


def test_every_relative_link_in_readme_and_docs_resolves_to_a_file_and_heading():
    problems = broken_links(doc_pages())
    assert not problems, 'broken links:\n' + '\n'.join(problems)


def test_github_slug_follows_githubs_heading_id_rule():
    assert github_slug('The CPU demo: `make demo`') == 'the-cpu-demo-make-demo'
    assert github_slug('GhostNet-1.1x, and widening: `tools/widen_weights.py`') == \
        'ghostnet-11x-and-widening-toolswiden_weightspy'
    assert github_slug("AMP and mmcv's ops") == 'amp-and-mmcvs-ops'
    assert github_slug('GPU: not measured yet') == 'gpu-not-measured-yet'
    assert github_slug('**Bold** and [a link](x.md)') == 'bold-and-a-link'
    assert github_slug('1. ImageNet weights for 1.1x') == '1-imagenet-weights-for-11x'


def test_checker_reports_a_broken_file_link_and_a_broken_anchor(tmp_path):
    (tmp_path / 'docs').mkdir()
    (tmp_path / 'docs' / 'other.md').write_text('# Other page\n\n## Usage\n\n## Usage\n', encoding='utf-8')
    page = tmp_path / 'README.md'
    page.write_text('\n'.join([
        '# Title',
        '## A section',
        '[fine](docs/other.md) [fine](docs/other.md#usage) [fine](docs/other.md#usage-1) [fine](#a-section)',
        '[fine](docs/) [external](https://example.com/missing.md) [mail](mailto:a@b.c)',
        '`[inline code](missing-in-code.md)`',
        '```',
        '[in a code block](missing-in-block.md)',
        '```',
        '[missing file](docs/missing.md)',
        '[missing anchor](docs/other.md#usage-2)',
        '[missing in-page anchor](#no-such-section)',
        '![missing image](docs/images/missing.png)',
    ]) + '\n', encoding='utf-8')
    problems = broken_links([str(page), str(tmp_path / 'docs' / 'other.md')], root=str(tmp_path))
    assert len(problems) == 4, problems
    assert problems[0].startswith('README.md:9: docs/missing.md: no such file')
    assert problems[1].startswith('README.md:10: docs/other.md#usage-2: no heading')
    assert problems[2].startswith('README.md:11: #no-such-section: no heading')
    assert problems[3].startswith('README.md:12: docs/images/missing.png: no such file')
