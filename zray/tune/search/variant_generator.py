"""Resolving a param space: grid_search expansion and sampling of domains.

The grid is the product of every `grid_search` in the space, the first one found (depth-first,
in dict order) varying fastest, as in Ray. Each variant samples every `Domain`, then every
`sample_from` function, which sees the config resolved so far.
"""
import copy
import re

from .sample import Domain, _as_rng


def is_grid(value):
    return isinstance(value, dict) and len(value) == 1 and "grid_search" in value


def _walk(space, path=()):
    """(path, leaf) for every grid dict, Domain and plain value; containers are walked."""
    if is_grid(space) or isinstance(space, Domain):
        yield path, space
    elif isinstance(space, dict):
        for key, value in space.items():
            yield from _walk(value, path + (key,))
    elif isinstance(space, (list, tuple)):
        for i, value in enumerate(space):
            yield from _walk(value, path + (i,))


def grid_axes(space):
    """[(path, values)] of every grid_search in the space."""
    return [(p, leaf["grid_search"]) for p, leaf in _walk(space) if is_grid(leaf)]


def count_grid(space):
    n = 1
    for _, values in grid_axes(space):
        n *= len(values)
    return n


def has_unresolved(space):
    return any(is_grid(leaf) or isinstance(leaf, Domain) for _, leaf in _walk(space))


def assign(config, path, value):
    node = config
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value


def lookup(config, path):
    node = config
    for key in path:
        node = node[key]
    return node


def _containers_copy(space):
    if isinstance(space, dict) and not is_grid(space):
        return {k: _containers_copy(v) for k, v in space.items()}
    if isinstance(space, list):
        return [_containers_copy(v) for v in space]
    if isinstance(space, tuple):
        return [_containers_copy(v) for v in space]
    return space


def resolve(space, grid_index, rng=None):
    """One variant: the grid point number `grid_index` with every domain sampled.

    Returns (config, resolved_vars) where resolved_vars maps each resolved path to its value.
    """
    rng = _as_rng(rng)
    config = _containers_copy(space)
    resolved = {}
    for path, values in grid_axes(space):
        idx = grid_index % len(values)
        grid_index //= len(values)
        value = copy.deepcopy(values[idx])
        assign(config, path, value)
        resolved[path] = value
    later = []
    for path, leaf in list(_walk(config)):
        if isinstance(leaf, Domain):
            if leaf.is_function():
                later.append((path, leaf))
            else:
                value = leaf.sample(random_state=rng)
                assign(config, path, value)
                resolved[path] = value
    for path, leaf in later:
        value = leaf.sample(config=config, random_state=rng)
        assign(config, path, value)
        resolved[path] = value
    # A grid's values (or a function's result) may themselves hold domains: resolve again.
    if has_unresolved(config):
        config, more = resolve(config, 0, rng)
        resolved.update(more)
    return config, resolved


def generate_variants(space, rng=None):
    """Every grid point once, each sampled: yields (resolved_vars, config)."""
    rng = _as_rng(rng)
    for i in range(count_grid(space)):
        config, resolved = resolve(space, i, rng)
        yield resolved, config


_UNSAFE = re.compile(r"[^a-zA-Z0-9_-]+")


def _clean(value):
    if isinstance(value, float):
        return f"{value:.4f}"
    return _UNSAFE.sub("_", str(value)).strip("_")


def format_vars(resolved):
    """`a=1,lr=0.0010`: the last key of each path and its value, sorted by path, dir-name safe."""
    return ",".join(f"{_clean(path[-1])}={_clean(value)}" for path, value in
                    sorted(resolved.items(), key=lambda kv: tuple(map(str, kv[0]))))


def flatten_dict(d, prefix="", delimiter="/"):
    out = {}
    for key, value in d.items():
        name = f"{prefix}{delimiter}{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            out.update(flatten_dict(value, name, delimiter))
        else:
            out[name] = value
    return out


def unflatten_dict(d, delimiter="/"):
    out = {}
    for key, value in d.items():
        node = out
        parts = key.split(delimiter)
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out
