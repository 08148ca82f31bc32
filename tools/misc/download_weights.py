"""Fetch the weights the configs start from, for a machine without network access (a compute node).

    python tools/misc/download_weights.py --all                          # every file of configs/metafile.yml
    python tools/misc/download_weights.py upernet_inceptionnext-t_8xb2-160k_ade20k-512x512 atto
    python tools/misc/download_weights.py --all --to /shared/torch_home/hub/checkpoints

NAMES are model names of configs/metafile.yml (``mim search inceptionnext-dense``), config file names, or
``atto`` / ``tiny`` / ``small`` / ``base`` / ``base_384`` (the official release files). Each file is
downloaded once (a file already there is kept, no request) into torch's hub cache,
``$TORCH_HOME/hub/checkpoints`` (default ``~/.cache/torch/hub/checkpoints``), where the configs,
``tools/test.py`` and MMEngine look for a URL's file; ``--to DIR`` writes there instead: copy DIR to
``$TORCH_HOME/hub/checkpoints`` of the offline machine."""
import argparse
import os.path as osp

from backbones.utils.cli import run_cli
from backbones.utils.errors import UserInputError

METAFILE = osp.join(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'configs', 'metafile.yml')
RELEASE = 'https://github.com/sail-sg/inceptionnext/releases/download/model/inceptionnext_{}.pth'
ARCHES = ('atto', 'tiny', 'small', 'base', 'base_384')


def index(path: str = METAFILE) -> dict:
    """{model name: [weight URLs]} of the model index (read with yaml.safe_load: data only)."""
    import yaml
    try:
        with open(path) as f:
            models = (yaml.safe_load(f) or {}).get('Models') or []
    except (OSError, yaml.YAMLError) as e:
        raise UserInputError(f'cannot read the model index {path}: {e}') from None
    out = {}
    for m in models:
        weights = m.get('Weights') or []
        out[m['Name']] = [weights] if isinstance(weights, str) else list(weights)
        out.setdefault(osp.basename(str(m.get('Config', ''))), out[m['Name']])
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('names', nargs='*', help='model names of configs/metafile.yml, config file names, or '
                   'arches: ' + ', '.join(ARCHES))
    p.add_argument('--all', action='store_true', help='every weights file the model index names')
    p.add_argument('--to', help='write the files into this folder instead of $TORCH_HOME/hub/checkpoints')
    args = p.parse_args(argv)
    from backbones.models.weights import cache_path, download
    if not args.names and not args.all:
        raise UserInputError('name the models (or arches) whose weights to fetch, or pass --all')
    models = index()
    urls = []
    for name in (list(models) if args.all else args.names):
        if name in ARCHES:
            found = [RELEASE.format(name)]
        elif name in models:
            found = models[name]
        else:
            example = next(iter(models), '?')
            raise UserInputError(f'unknown model {name!r}: use a name of {METAFILE} (e.g. {example}), a config '
                                 f'file name, or one of {", ".join(ARCHES)}')
        urls += [u for u in found if u not in urls]
    for url in urls:
        dst = osp.join(osp.expanduser(args.to), osp.basename(url)) if args.to else cache_path(url)
        there = osp.isfile(dst)
        download(url, dst)
        print(f'{url} -> {dst}' + (' (already there)' if there else ''), flush=True)
    return 0


if __name__ == '__main__':
    run_cli(main)
