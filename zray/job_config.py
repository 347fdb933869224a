"""JobConfig: settings of a job (a driver and everything it starts), for `init(job_config=...)`.

zray reads `ray_namespace` (the job's namespace when init() names none), `default_actor_lifetime`
("detached" makes every actor of the job outlive its driver unless it says otherwise),
`runtime_env` (merged under init()'s own) and `metadata` (kept, shown nowhere yet). The JVM
fields exist so Ray programs that set them run; zray has no Java workers.
"""
import copy

LIFETIMES = ("detached", "non_detached")


class JobConfig:
    def __init__(self, jvm_options=None, code_search_path=None, runtime_env=None,
                 _client_job=False, metadata=None, ray_namespace=None,
                 default_actor_lifetime="non_detached", _py_driver_sys_path=None, **_ignored):
        if code_search_path is not None and not isinstance(code_search_path, (list, tuple)):
            raise TypeError(f"code_search_path must be a list or tuple, got "
                            f"{type(code_search_path).__name__}")
        self.jvm_options = list(jvm_options or [])
        self.code_search_path = list(code_search_path or [])
        self.metadata = dict(metadata or {})
        self.runtime_env = None
        self.ray_namespace = None
        self._default_actor_lifetime = "non_detached"
        self.set_runtime_env(runtime_env)
        if ray_namespace is not None:
            self.set_ray_namespace(ray_namespace)
        self.set_default_actor_lifetime(default_actor_lifetime)
        self._py_driver_sys_path = list(_py_driver_sys_path or [])

    def set_metadata(self, key, value):
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError("job metadata keys and values must be str")
        self.metadata[key] = value

    def set_runtime_env(self, runtime_env, validate=False):
        if runtime_env is not None and not isinstance(runtime_env, dict):
            raise TypeError(f"runtime_env must be a dict, got {type(runtime_env).__name__}")
        self.runtime_env = copy.deepcopy(runtime_env) if runtime_env else None

    def set_ray_namespace(self, ray_namespace):
        if not isinstance(ray_namespace, str) or not ray_namespace:
            raise TypeError(f"ray_namespace must be a non-empty str, got {ray_namespace!r}")
        self.ray_namespace = ray_namespace

    def set_default_actor_lifetime(self, default_actor_lifetime):
        if default_actor_lifetime not in LIFETIMES:
            raise ValueError(f"default_actor_lifetime must be one of {LIFETIMES}, got "
                             f"{default_actor_lifetime!r}")
        self._default_actor_lifetime = default_actor_lifetime

    @property
    def default_actor_lifetime(self):
        return self._default_actor_lifetime

    def __repr__(self):
        return (f"JobConfig(ray_namespace={self.ray_namespace!r}, default_actor_lifetime="
                f"{self._default_actor_lifetime!r}, runtime_env={self.runtime_env!r})")
