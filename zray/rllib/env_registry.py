"""The environment registry: `register_env(name, creator)` and how an env spec becomes an env.

`zray.tune.registry.register_env` is this function (re-exported there). The registry lives in
the driver: an `Algorithm` resolves its env spec to a creator once, at build time, and ships
that creator to its env runner actors, so workers never need the driver's registry.

An env spec is one of
- a name given to `register_env`: `creator(env_config)`;
- a `gymnasium.Env` subclass: `cls(env_config)`;
- any other callable: `spec(env_config)`;
- a gymnasium id such as "CartPole-v1": `gymnasium.make(id, **env_config)`.
"""
import logging

logger = logging.getLogger("zray.rllib")

_registry = {}


class EnvContext(dict):
    """The `env_config` an env creator gets: a dict, plus where the env runs.

    `worker_index` is 0 in the driver and 1..N in the env runners; `vector_index` numbers the
    envs inside one runner; `num_workers` is the number of env runners.
    """

    def __init__(self, env_config=None, worker_index=0, vector_index=0, num_workers=0,
                 remote=False):
        super().__init__(env_config or {})
        self.worker_index = worker_index
        self.vector_index = vector_index
        self.num_workers = num_workers
        self.remote = remote

    def copy_with_overrides(self, env_config=None, worker_index=None, vector_index=None,
                            num_workers=None):
        return EnvContext(dict(self) if env_config is None else env_config,
                          self.worker_index if worker_index is None else worker_index,
                          self.vector_index if vector_index is None else vector_index,
                          self.num_workers if num_workers is None else num_workers,
                          self.remote)

    def __reduce__(self):
        return (EnvContext, (dict(self), self.worker_index, self.vector_index,
                             self.num_workers, self.remote))


def register_env(name, env_creator):
    """Register `env_creator(env_config) -> env` under `name`, for `.environment(env=name)`."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"an env name must be a non-empty str, got {name!r}")
    if not callable(env_creator):
        raise TypeError(f"env_creator must be callable, got {type(env_creator).__name__}")
    if name in _registry:
        logger.debug("register_env: replacing the creator registered as %r", name)
    _registry[name] = env_creator


def registered_env(name):
    """The creator registered under `name`, or None."""
    return _registry.get(name)


class _GymMake:
    """A picklable creator for a gymnasium id."""

    def __init__(self, env_id):
        self.env_id = env_id

    def __call__(self, env_config):
        import gymnasium as gym
        return gym.make(self.env_id, **dict(env_config or {}))

    def __repr__(self):
        return f"gymnasium.make({self.env_id!r})"


def env_creator_for(spec):
    """The creator `f(env_config) -> env` for an env spec (see the module docstring)."""
    if spec is None:
        raise ValueError("no environment: call .environment(env=...) on the config first")
    if isinstance(spec, str):
        creator = _registry.get(spec)
        return creator if creator is not None else _GymMake(spec)
    if callable(spec):   # a class (gym.Env subclass or not) or a function
        return spec
    raise TypeError(f"env must be a registered name, a gymnasium id, an Env class or a "
                    f"callable, got {type(spec).__name__}")


def make_env(creator, env_context):
    """Call `creator` and check the result looks like a gymnasium env."""
    env = creator(env_context)
    for attr in ("reset", "step", "observation_space", "action_space"):
        if not hasattr(env, attr):
            raise TypeError(f"the env creator {creator!r} returned {type(env).__name__}, "
                            f"which has no {attr!r}: expected a gymnasium.Env")
    return env
