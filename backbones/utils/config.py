"""Reading a config: the file (errors name it and the line), checked ``--cfg-options``: a key the config
does not list is added when the class built from its dict takes it (a key no one takes, and a value of
another kind than the config's, are errors naming the key)."""
import ast
import difflib
import importlib
import inspect
import os.path as osp
import re
from typing import Optional

from backbones.utils.errors import UserInputError
from backbones.utils.io import error_line


def load_config(path: str, options: Optional[dict] = None, check_keys: bool = True):
    """``Config.fromfile(path)`` + strict ``--cfg-options``; errors name the file (and line). A key the options
    add is checked against the class its dict builds (``check_added_keys``) here, or, with
    ``check_keys=False``, by the caller once the config is final (the train / test tools' pre-flight)."""
    from mmengine.config import Config
    if not osp.isfile(path):
        raise UserInputError(f'config file not found: {path}')
    if path.endswith('.py'):  # MMEngine's own syntax error names neither the line nor, in the end, the file
        try:
            with open(path, encoding='utf-8') as f:
                ast.parse(f.read(), filename=path)
        except SyntaxError as e:
            raise UserInputError(f'{path}:{e.lineno}: syntax error in config: {e.msg}') from None
    try:
        cfg = Config.fromfile(path)
    except Exception as e:  # noqa: BLE001 -- MMEngine raises many types for a config it cannot read
        raise UserInputError(f'cannot read config {path}: {error_line(e)}') from None
    merge_cfg_options(cfg, options)
    if check_keys:
        check_added_keys(cfg)
    return cfg


# Top-level keys an option may add: the Runner's arguments and what this suite's runner and tools read.
_TOP_LEVEL_EXTRA = ('runner_type', 'load_from_partial', 'restart', 'nonfinite_loss', 'compile', 'tta_model',
                    'tta_pipeline', 'model_wrapper_cfg')


def merge_cfg_options(cfg, options: Optional[dict]) -> list:
    """Like ``cfg.merge_from_dict``, with the mistakes MMEngine lets through or turns into tracebacks named:

    - a key may add to a dict of the config (``test_evaluator.classwise``, ``randomness.deterministic``,
      ``optim_wrapper.clip_grad.max_norm`` where ``clip_grad`` is None): as MMEngine does. Whether the class
      built from that dict takes it is checked when it is built (``check_added_keys``, from the tools'
      pre-flight): a typo fails there with the closest name the class takes;
    - a new top-level key must be one the Runner (or this suite) reads; an index past a list's end, a key
      inside a value that is no dict, and two options of which one sets a value and the other a key inside
      it are errors here;
    - a value of another kind than the config's is an error (``_check_option_type``).

    Returns the added keys (also kept on ``cfg`` for ``check_added_keys``)."""
    added = []
    if not options:
        return added
    for key in options:  # one option sets a value, another a key inside it (in either order)
        inner = next((k for k in options if k.startswith(key + '.')), None)
        if inner is not None and not isinstance(options[key], dict):
            raise UserInputError(f'--cfg-options {key}={options[key]!r} and {inner}={options[inner]!r} in '
                                 f'one command: the first replaces {key} with {options[key]!r}, the second '
                                 'sets a key inside it; pass one of them')
    root = getattr(cfg, '_cfg_dict', cfg)
    for key in options:
        node, done = root, []
        parts = key.split('.')
        for i, part in enumerate(parts):
            if isinstance(node, (list, tuple)):
                if part.isdigit() and int(part) < len(node):
                    node = node[int(part)]
                    done.append(part)
                    continue
                where = '.'.join(done)
                raise UserInputError(f'unknown config key {key!r} in --cfg-options: {where} is a list of '
                                     f'{len(node)}; {part!r} is no index of it (0..{len(node) - 1})')
            if isinstance(node, dict) and part in node:
                if node[part] is None and i < len(parts) - 1:  # clip_grad=None: a dict from here on
                    node[part] = {}
                node = node[part]
                done.append(part)
                continue
            if isinstance(node, dict):
                if not done:
                    _check_top_level_key(key, part, node)
                added.append(key)
                break
            where = '.'.join(done)
            raise UserInputError(f'--cfg-options {key}: {where} is {node!r} in the config, not a dict, so it '
                                 f'has no key {part!r}; set {where} itself')
        else:
            _check_option_type(key, node, options[key])
    cfg.merge_from_dict(options, allow_list_keys=True)
    try:
        object.__setattr__(cfg, '_added_option_keys', list(getattr(cfg, '_added_option_keys', [])) + added)
    except (AttributeError, TypeError):  # a plain dict: the caller passes the returned keys on
        pass
    return added


def _check_top_level_key(key: str, part: str, top: dict) -> None:
    """A new top-level key must be one the Runner takes (or this suite reads); MMEngine ignores others."""
    from mmengine.runner import Runner
    known = [p for p in inspect.signature(Runner.__init__).parameters if p not in ('self', 'cfg')]
    known += [k for k in _TOP_LEVEL_EXTRA if k not in known]
    if part in known:
        return
    near = difflib.get_close_matches(part, sorted(set(top.keys()) | set(known)), n=3)
    raise UserInputError(f'unknown config key {key!r} in --cfg-options: the top level has no {part!r}, and '
                         'the Runner takes no such argument'
                         + (f' (did you mean {", ".join(near)}?)' if near else ''))


# --------------------------------------------------------------------------------------------------
# Keys added by --cfg-options: does the class built from their dict take them?
# --------------------------------------------------------------------------------------------------
# (the registry a typed dict at this path is built from, keys its builder takes besides the class's own)
_REGISTRY_OF_PATH = (
    (r'model(\..*)?\.init_cfg(\.\d+)?$', 'WEIGHT_INITIALIZERS', ()),
    (r'(model|tta_model)(\..*)?$', 'MODELS', ()),
    (r'\w+_dataloader\.dataset\.(.*\.)?pipeline\.\d+$', 'TRANSFORMS', ()),
    (r'tta_pipeline(\..*)?$', 'TRANSFORMS', ()),
    (r'\w+_dataloader\.(batch_)?sampler$', 'DATA_SAMPLERS', ()),
    (r'\w+_dataloader\.dataset(\..*)?$', 'DATASETS', ()),
    (r'\w+_evaluator(\.\d+)?$', 'METRICS', ()),
    (r'optim_wrapper$', 'OPTIM_WRAPPERS', ('constructor', 'paramwise_cfg')),
    (r'optim_wrapper\.optimizer$', 'OPTIMIZERS', ()),
    (r'param_scheduler(\.\d+)?$', 'PARAM_SCHEDULERS', ('convert_to_iter_based',)),
    (r'(default_hooks\.\w+|custom_hooks\.\d+)$', 'HOOKS', ('priority',)),
    (r'(train|val|test)_cfg$', 'LOOPS', ()),
    (r'visualizer$', 'VISUALIZERS', ()),
    (r'visualizer\.vis_backends\.\d+$', 'VISBACKENDS', ()),
    (r'log_processor$', 'LOG_PROCESSORS', ()),
    (r'model_wrapper_cfg$', 'MODEL_WRAPPERS', ()),
)


def _untyped_owner(path: str, node: dict):
    """(what, keys it takes) for the dicts without ``type`` that MMEngine's Runner passes on as keyword
    arguments, else None (nothing to check against)."""
    import torch
    from mmengine.runner.utils import set_random_seed

    def args(fn, *drop):
        return [p for p in inspect.signature(fn).parameters if p not in ('self',) + drop]
    if path == 'randomness':
        return 'randomness (mmengine.runner.set_random_seed)', args(set_random_seed)
    if path == 'env_cfg':
        return 'env_cfg (the Runner\'s environment set-up)', ['cudnn_benchmark', 'mp_cfg', 'dist_cfg',
                                                             'resource_limit']
    if path == 'auto_scale_lr':
        return 'auto_scale_lr', ['enable', 'base_batch_size']
    if path == 'optim_wrapper.clip_grad':
        clip = torch.nn.utils
        fn = clip.clip_grad_value_ if node.get('type') == 'value' else clip.clip_grad_norm_
        return f'optim_wrapper.clip_grad (torch.nn.utils.{fn.__name__})', ['type'] + args(fn, 'parameters')
    if re.fullmatch(r'\w+_dataloader', path):
        return f'{path} (torch.utils.data.DataLoader)', args(torch.utils.data.DataLoader) + ['sampler']
    if re.fullmatch(r'(train|val|test)_cfg', path):
        from mmengine.runner import EpochBasedTrainLoop, IterBasedTrainLoop, TestLoop, ValLoop
        loop = {'val_cfg': ValLoop, 'test_cfg': TestLoop}.get(path) or (
            EpochBasedTrainLoop if node.get('by_epoch', True) else IterBasedTrainLoop)
        return f'{path} ({loop.__name__})', args(loop, 'runner', 'dataloader', 'evaluator') + ['by_epoch']
    return None


def _accepted_keywords(obj):
    """The keyword arguments ``obj`` (a class or function) takes, following ``**kwargs`` up the classes'
    ``__init__`` chain; None when it cannot be told (``**kwargs`` all the way, or no signature)."""
    chain = [obj] if not inspect.isclass(obj) else [k.__dict__['__init__'] for k in obj.__mro__
                                                    if k is not object and '__init__' in k.__dict__]
    names = set()
    for fn in chain:
        try:
            params = inspect.signature(fn).parameters.values()
        except (TypeError, ValueError):
            return None
        names |= {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            return names - {'self'}
    return None


def _registry_class(scope, path: str, type_):
    """The class (or function) the typed dict at ``path`` is built from, or None when it is not found."""
    if not isinstance(type_, str):
        return type_ if callable(type_) else None, ()
    import mmengine.registry as registries
    from mmengine.registry import DefaultScope
    for pattern, name, extra in _REGISTRY_OF_PATH:
        if re.fullmatch(pattern, path):
            candidates = [(getattr(registries, name), extra)]
            break
    else:
        candidates = []
    candidates += [(r, ()) for r in vars(registries).values() if isinstance(r, registries.Registry)
                   and all(r is not c for c, _ in candidates)]
    for registry, extra in candidates:
        try:
            with DefaultScope.overwrite_default_scope(scope):
                with registry.switch_scope_and_registry(scope) as reg:
                    found = reg.get(type_)
        except Exception:  # noqa: BLE001 -- a scope whose modules cannot be imported: nothing to check
            found = None
        if found is not None:
            return found, extra
    return None, ()


def check_added_keys(cfg, added: Optional[list] = None) -> None:
    """Each key that ``--cfg-options`` added to the config (``merge_cfg_options``) must be one that the class
    built from its dict takes (its signature), or that MMEngine reads there (``randomness``, the dataloaders,
    ``clip_grad``, ...): a key no one reads is an error naming the key and the closest valid name. Keys whose
    owner takes ``**kwargs`` to the end, or is not known, pass."""
    added = getattr(cfg, '_added_option_keys', []) if added is None else added
    if not added:
        return
    root = getattr(cfg, '_cfg_dict', cfg)
    scope = root.get('default_scope')
    for module in (root.get('custom_imports') or {}).get('imports', []):
        try:
            importlib.import_module(module)
        except ImportError:
            pass
    for key in added:
        parts, node, owner = key.split('.'), root, []
        for part in parts[:-1]:  # down to the first key the config did not have
            nxt = node[int(part)] if isinstance(node, (list, tuple)) else node.get(part)
            if not isinstance(nxt, (dict, list, tuple)) or (isinstance(node, dict) and part not in node):
                break
            node = nxt
            owner.append(part)
        if not isinstance(node, dict) or not owner:
            continue
        path, new = '.'.join(owner), parts[len(owner)]
        if 'type' in node:
            obj, extra = _registry_class(scope, path, node['type'])
            keywords = _accepted_keywords(obj) if obj is not None else None
            what = f"{getattr(obj, '__name__', node['type'])} ({path})"
        else:
            found = _untyped_owner(path, node)
            what, keywords, extra = (found or (None, None))[0], (found or (None, None))[1], ()
        if keywords is None:
            continue
        keywords = set(keywords) | set(extra) | {'type', '_scope_'}
        if new in keywords:
            continue
        near = difflib.get_close_matches(new, sorted(keywords), n=3)
        raise UserInputError(f'unknown config key {key!r} in --cfg-options: {what} takes no {new!r}'
                             + (f' (did you mean {", ".join(near)}?)' if near else ''))


def _check_option_type(key: str, old, new) -> None:
    """A value of another kind than the config's (text for a number, a list for a number, a number for a
    list) fails deep inside the Runner; name it here. ``None`` on either side, ints for floats, and a
    tuple for a list are fine."""
    def kind(v):
        if isinstance(v, bool):
            return 'a boolean'
        if isinstance(v, (int, float)):
            return 'a number'
        if isinstance(v, str):
            return 'text'
        if isinstance(v, (list, tuple)):
            return 'a list'
        if isinstance(v, dict):
            return 'a dict'
        return None
    a, b = kind(old), kind(new)
    if old is None or new is None or a is None or b is None or a == b:
        return
    if {a, b} == {'a boolean', 'a number'}:
        return  # 0 / 1 for flags, as in MMEngine's own configs
    raise UserInputError(f'--cfg-options {key}={new!r}: the config has {a} there ({old!r}), got {b}')


def parse_option_value(text: str):
    """One ``--cfg-options`` value, as MMEngine's ``DictAction`` reads it (numbers, True/False/None, lists
    ``a,b`` / ``[a, b]`` / tuples ``(a, b)``, surrounding quotes dropped), except that spaces inside a value
    are kept (``data_root=/data/my set`` stays ``/data/my set``; MMEngine removes every space) and a path
    starting with ``~/`` is expanded to the home folder (the shell does not expand ``key=~/x``)."""
    from mmengine.config import DictAction
    val = text.strip().strip('\'"').strip()
    is_tuple = val.startswith('(') and val.endswith(')')
    if is_tuple or (val.startswith('[') and val.endswith(']')):
        items = _split_top_level(val[1:-1])
    elif ',' in val:
        items = _split_top_level(val)
    else:
        if val == '~' or val.startswith('~/'):
            return osp.expanduser(val)
        return DictAction._parse_int_float_bool(val)
    values = [parse_option_value(i) for i in items if i.strip()]
    return tuple(values) if is_tuple else values


def _split_top_level(text: str) -> list:
    """``text`` split at the commas outside brackets."""
    if text.count('(') != text.count(')') or text.count('[') != text.count(']'):
        raise ValueError(f'unbalanced brackets in {text!r}')
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in '([':
            depth += 1
        elif ch in ')]':
            depth -= 1
        elif ch == ',' and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts
