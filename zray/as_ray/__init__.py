"""`ray` as an alias of zray, opt-in: `zray.install_as_ray()` or `python -m zray.as_ray app.py`.

After installing, `import ray` gives the `zray` module object itself and `import ray.X.Y` gives
`zray.X.Y` (the same object, so `ray.util.collective is zray.util.collective`): programs and
third-party integrations that import `ray` by name run on zray unchanged. A meta-path finder,
first on `sys.meta_path`, answers every name under `ray`; each import loads the zray module
(lazily, as usual) and registers it under the `ray` name too. Names whose place differs in
zray are in RENAMED; every other `ray.X` is `zray.X`.

Nothing happens on `import zray`: a process that has the real Ray keeps it unless it asks.
"""
import importlib
import importlib.abc
import importlib.util
import sys

ALIAS = "ray"

# ray name -> zray name, where zray's layout differs from Ray's (a prefix maps its submodules).
RENAMED = {
    "ray.air": "zray.train",    # Ray AIR's session/config/Checkpoint live in zray.train
}


def zray_name(ray_name):
    """The zray module a `ray...` module name stands for."""
    for ray_prefix, zray_prefix in RENAMED.items():
        if ray_name == ray_prefix or ray_name.startswith(ray_prefix + "."):
            return zray_prefix + ray_name[len(ray_prefix):]
    return "z" + ray_name


class _AliasLoader(importlib.abc.Loader):
    """Hands the import system the zray module, already loaded, instead of a new one."""

    def __init__(self, target):
        self.target = target

    def create_module(self, spec):
        module = importlib.import_module(self.target)
        self._own_spec = module.__spec__
        return module

    def exec_module(self, module):
        # Loaded by import_module above. The import system has just set the alias spec on it:
        # the module keeps its own (relative imports and reloads inside zray read it).
        module.__spec__ = self._own_spec


class RayAliasFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname != ALIAS and not fullname.startswith(ALIAS + "."):
            return None
        name = zray_name(fullname)
        try:
            found = importlib.util.find_spec(name)
        except ModuleNotFoundError:
            found = None
        if found is None:
            raise ModuleNotFoundError(
                f"No module named {fullname!r}: zray (standing in for ray) has no {name!r}",
                name=fullname)
        return importlib.util.spec_from_loader(fullname, _AliasLoader(name),
                                               is_package=found.submodule_search_locations
                                               is not None)


_finder = RayAliasFinder()


def install_as_ray():
    """Make `import ray` (and every `ray.X`) resolve to zray in this process.

    Raises RuntimeError when a real `ray` was imported already: its module objects are in use
    and could not be swapped under their users. Idempotent."""
    import zray
    existing = sys.modules.get(ALIAS)
    if existing is not None and existing is not zray:
        raise RuntimeError(
            "install_as_ray(): a module named 'ray' is already imported "
            f"({getattr(existing, '__file__', None) or existing!r}); call install_as_ray() "
            "before anything imports ray")
    if _finder not in sys.meta_path:
        sys.meta_path.insert(0, _finder)
    sys.modules[ALIAS] = zray
    # zray modules imported before now are reachable under their ray names too.
    for name, module in list(sys.modules.items()):
        if name.startswith("zray.") and module is not None:
            sys.modules.setdefault(ray_name_of(name), module)
    return zray


def ray_name_of(zray_module_name):
    """The plain `ray...` name of a zray module (RENAMED names are made when imported)."""
    return zray_module_name[1:]


def uninstall_as_ray():
    """Undo install_as_ray (for tests): `ray` names are forgotten; zray modules stay loaded."""
    if _finder in sys.meta_path:
        sys.meta_path.remove(_finder)
    import zray
    for name in [n for n in sys.modules if n == ALIAS or n.startswith(ALIAS + ".")]:
        module = sys.modules[name]
        if module is zray or getattr(module, "__name__", "").startswith("zray"):
            del sys.modules[name]


__all__ = ["install_as_ray", "uninstall_as_ray", "RayAliasFinder", "zray_name"]
