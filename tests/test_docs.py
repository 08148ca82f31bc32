"""README.md and docs/*.md: the first code block holds the two commands a new user runs (the second is what
CI runs, .ci/run), every relative link points at an existing file and heading, and every repository path or
config name the pages give exists (a stale path is a command that fails)."""
import glob
import itertools
import os.path as osp
import re

from tests.helpers import REPO

PAGES = [osp.join(REPO, 'README.md')] + sorted(glob.glob(osp.join(REPO, 'docs', '*.md')))
PATH_RE = r'(?<![\w/.])((?:tools|configs|backbones|tests|train_cls|docs|requirements|\.ci)/[\w./{},*\-]*[\w}*])'
FIRST_COMMANDS = ['bash tools/setup_env.sh && bash tools/main_job.sh',
                  'bash tools/setup_env.sh && .venv/bin/python -m pytest']


def _read(path):
    with open(path) as f:
        return f.read()


def _anchors(md):
    """GitHub's heading anchors: lower case, punctuation other than '-' dropped, spaces -> '-'."""
    heads = re.findall(r'^#+\s+(.*)$', re.sub(r'```.*?```', '', _read(md), flags=re.S), flags=re.M)
    return {re.sub(r'[^\w\- ]', '', h.strip().lower()).replace(' ', '-') for h in heads}


def _expand(s):
    """'a-{t,s}_x' -> ['a-t_x', 'a-s_x'] (brace lists, as the config tables write them)."""
    m = re.search(r'\{([^{}]*)\}', s)
    if not m:
        return [s]
    return list(itertools.chain.from_iterable(_expand(s[:m.start()] + alt + s[m.end():])
                                              for alt in m.group(1).split(',')))


def broken_links(pages):
    bad = []
    for page in pages:
        text = re.sub(r'```.*?```', '', _read(page), flags=re.S)
        for link in re.findall(r'\]\(([^)\s]+)\)', text):
            if re.match(r'[a-z]+:', link):
                continue
            path, _, frag = link.partition('#')
            target = osp.normpath(osp.join(osp.dirname(page), path)) if path else page
            if not osp.exists(target):
                bad.append(f'{osp.relpath(page, REPO)}: {link} (no such file)')
            elif frag and (not target.endswith('.md') or frag not in _anchors(target)):
                bad.append(f'{osp.relpath(page, REPO)}: {link} (no such heading)')
    return bad


def missing_paths(pages, root=REPO):
    bad = []
    for page in pages:
        text = _read(page)
        named = re.findall(PATH_RE, text)
        configs = [f'configs/{c}' for c in re.findall(r'`([\w\-{},]+\.py)`', text)
                   if re.match(r'(upernet|fpn|mask-rcnn|cascade|retinanet|inceptionnext-|convnext-)', c)]
        for p in set(named + configs):
            bad += [f'{osp.relpath(page, REPO)}: {q}' for q in _expand(p) if not glob.glob(osp.join(root, q))]
    return bad


def test_readme_starts_with_the_two_commands_and_ci_runs_the_second():
    block = re.search(r'```bash\n(.*?)```', _read(PAGES[0]), flags=re.S).group(1)
    assert [ln for ln in block.splitlines() if not ln.startswith('#')] == FIRST_COMMANDS
    ci = [ln.strip() for ln in _read(osp.join(REPO, '.ci', 'run')).splitlines() if ln and not ln.startswith('#')]
    setup = FIRST_COMMANDS[1].split(' && ')[0]  # CI: the linter after the set-up, then the README's command as it is
    assert ci[-2:] == [f'{setup} && .venv/bin/python -m ruff check .', FIRST_COMMANDS[1]], ci


def test_relative_links_resolve():
    assert len(PAGES) > 1
    assert broken_links(PAGES) == []


def test_named_paths_exist():
    assert missing_paths(PAGES) == []


def test_the_checks_catch_a_stale_path_and_a_broken_link(tmp_path):
    """Controls: an old tool path, an unknown config and a link to a missing page or heading are reported."""
    page = tmp_path / 'page.md'
    page.write_text('`python tools/benchmark.py` and `retinanet_inceptionnext-s_fpn_1x_coco.py`; '
                    '[a](missing.md), [b](page.md#nowhere), [c](page.md#title)\n# Title\n')
    assert sorted(missing_paths([str(page)])) == [f'{osp.relpath(page, REPO)}: {q}' for q in
                                                  ('configs/retinanet_inceptionnext-s_fpn_1x_coco.py',
                                                   'tools/benchmark.py')]
    assert len(broken_links([str(page)])) == 2
