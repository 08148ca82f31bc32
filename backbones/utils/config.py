"""Reading a config: the file (errors name it and the line), strict ``--cfg-options`` (unknown keys and
values of another kind are errors)."""
import ast
import difflib
import os.path as osp
from typing import Optional

from backbones.utils.errors import UserInputError
from backbones.utils.io import error_line


def load_config(path: str, options: Optional[dict] = None):
    """``Config.fromfile(path)`` + strict ``--cfg-options``; errors name the file (and line)."""
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
    return cfg


def merge_cfg_options(cfg, options: Optional[dict]) -> None:
    """Like ``cfg.merge_from_dict`` but every key must already exist in the config (typos are errors)."""
    if not options:
        return
    for key in options:
        node, done = getattr(cfg, '_cfg_dict', cfg), []
        for part in key.split('.'):
            if isinstance(node, (list, tuple)) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            elif isinstance(node, dict) and part in node:
                node = node[part]
            else:
                siblings = list(node.keys()) if isinstance(node, dict) else []
                near = difflib.get_close_matches(part, siblings, n=3)
                where = '.'.join(done) or 'the top level'
                raise UserInputError(f'unknown config key {key!r} in --cfg-options: {where} has no {part!r}'
                                     + (f' (did you mean {", ".join(near)}?)' if near else ''))
            done.append(part)
        _check_option_type(key, node, options[key])
    cfg.merge_from_dict(options, allow_list_keys=True)


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
