"""Serve's options as frozen dataclasses, each bound checked where it is made.

Defaults follow Ray Serve 2.x:

    DeploymentConfig   num_replicas 1, max_ongoing_requests 5, max_queued_requests -1 (no bound),
                       health_check_period_s 10, health_check_timeout_s 30,
                       graceful_shutdown_wait_loop_s 2, graceful_shutdown_timeout_s 20
    AutoscalingConfig  min_replicas 1, max_replicas 1, target_ongoing_requests 2,
                       metrics_interval_s 10, look_back_period_s 30,
                       upscale_delay_s 30, downscale_delay_s 600, smoothing_factor 1
    num_replicas="auto" min_replicas 1, max_replicas 100, target_ongoing_requests 2
    HTTPOptions        host 127.0.0.1, port 8000, root_path "", request_timeout_s None

With the autoscaler's formula (see autoscaling.py): desired = ceil(avg ongoing over the look-back
window / target_ongoing_requests), clamped to [min_replicas, max_replicas], applied once it has
held for upscale_delay_s (downscale_delay_s going down).
"""
import dataclasses
import math
from typing import Any, Optional


class InvalidOption(ValueError):
    """An option of a deployment, an autoscaling config or HTTP options is out of bounds."""


def _number(owner, name, value, *, minimum=None, strictly=False, integer=False, allow_none=False):
    if value is None and allow_none:
        return
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind):
        raise TypeError(f"{owner}.{name} must be {'an int' if integer else 'a number'}, got {value!r}")
    if minimum is not None and (value <= minimum if strictly else value < minimum):
        raise InvalidOption(f"{owner}.{name} must be {'>' if strictly else '>='} {minimum}, got {value}")


@dataclasses.dataclass(frozen=True)
class AutoscalingConfig:
    min_replicas: int = 1
    initial_replicas: Optional[int] = None
    max_replicas: int = 1
    target_ongoing_requests: float = 2
    metrics_interval_s: float = 10.0
    look_back_period_s: float = 30.0
    smoothing_factor: float = 1.0
    upscale_smoothing_factor: Optional[float] = None
    downscale_smoothing_factor: Optional[float] = None
    upscaling_factor: Optional[float] = None
    downscaling_factor: Optional[float] = None
    downscale_delay_s: float = 600.0
    upscale_delay_s: float = 30.0
    aggregation_function: str = "mean"

    def __post_init__(self):
        own = "autoscaling_config"
        _number(own, "min_replicas", self.min_replicas, minimum=0, integer=True)
        _number(own, "max_replicas", self.max_replicas, minimum=1, integer=True)
        _number(own, "initial_replicas", self.initial_replicas, minimum=0, integer=True, allow_none=True)
        if self.min_replicas > self.max_replicas:
            raise InvalidOption(f"{own}: min_replicas ({self.min_replicas}) must be <= max_replicas "
                                f"({self.max_replicas})")
        if self.initial_replicas is not None and not (
                self.min_replicas <= self.initial_replicas <= self.max_replicas):
            raise InvalidOption(f"{own}: initial_replicas ({self.initial_replicas}) must lie in "
                                f"[min_replicas, max_replicas] = [{self.min_replicas}, {self.max_replicas}]")
        _number(own, "target_ongoing_requests", self.target_ongoing_requests, minimum=0, strictly=True)
        for name in ("metrics_interval_s", "look_back_period_s", "smoothing_factor"):
            _number(own, name, getattr(self, name), minimum=0, strictly=True)
        for name in ("upscale_smoothing_factor", "downscale_smoothing_factor", "upscaling_factor",
                     "downscaling_factor"):
            _number(own, name, getattr(self, name), minimum=0, strictly=True, allow_none=True)
        for name in ("downscale_delay_s", "upscale_delay_s"):
            _number(own, name, getattr(self, name), minimum=0)
        if self.aggregation_function not in ("mean", "max", "min"):
            raise InvalidOption(f"{own}.aggregation_function must be mean, max or min, got "
                                f"{self.aggregation_function!r}")

    @classmethod
    def from_value(cls, value):
        if value is None or isinstance(value, cls):
            return value
        if isinstance(value, dict):
            unknown = set(value) - {f.name for f in dataclasses.fields(cls)} - {"policy", "downscale_to_zero_delay_s"}
            if unknown:
                raise InvalidOption(f"autoscaling_config has unknown key(s) {sorted(unknown)}")
            return cls(**{k: v for k, v in value.items() if k not in ("policy", "downscale_to_zero_delay_s")})
        raise TypeError(f"autoscaling_config must be a dict or AutoscalingConfig, got {type(value).__name__}")

    @classmethod
    def for_auto(cls):
        """num_replicas="auto": Ray's defaults for it."""
        return cls(min_replicas=1, max_replicas=100, target_ongoing_requests=2)

    def upscale_factor(self):
        return self.upscaling_factor or self.upscale_smoothing_factor or self.smoothing_factor

    def downscale_factor(self):
        return self.downscaling_factor or self.downscale_smoothing_factor or self.smoothing_factor

    def starting_replicas(self):
        return self.initial_replicas if self.initial_replicas is not None else self.min_replicas

    def to_dict(self):
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class DeploymentConfig:
    num_replicas: Optional[int] = 1
    max_ongoing_requests: int = 5
    max_queued_requests: int = -1
    user_config: Any = None
    autoscaling_config: Optional[AutoscalingConfig] = None
    health_check_period_s: float = 10.0
    health_check_timeout_s: float = 30.0
    graceful_shutdown_wait_loop_s: float = 2.0
    graceful_shutdown_timeout_s: float = 20.0

    def __post_init__(self):
        own = "deployment"
        if self.autoscaling_config is None:
            _number(own, "num_replicas", self.num_replicas, minimum=0, integer=True)
        elif self.num_replicas not in (None, "auto"):
            raise InvalidOption("num_replicas and autoscaling_config cannot both be set "
                                "(num_replicas='auto' may go with autoscaling_config)")
        _number(own, "max_ongoing_requests", self.max_ongoing_requests, minimum=1, integer=True)
        _number(own, "max_queued_requests", self.max_queued_requests, minimum=-1, integer=True)
        if self.max_queued_requests == 0:
            raise InvalidOption("deployment.max_queued_requests must be -1 (no bound) or >= 1, got 0")
        for name in ("health_check_period_s", "health_check_timeout_s"):
            _number(own, name, getattr(self, name), minimum=0, strictly=True)
        for name in ("graceful_shutdown_wait_loop_s", "graceful_shutdown_timeout_s"):
            _number(own, name, getattr(self, name), minimum=0)

    def initial_target(self):
        if self.autoscaling_config is not None:
            return self.autoscaling_config.starting_replicas()
        return self.num_replicas

    def to_dict(self):
        d = dataclasses.asdict(self)
        return d


DEPLOYMENT_OPTION_NAMES = (
    "name", "version", "num_replicas", "ray_actor_options", "placement_group_bundles",
    "placement_group_strategy", "max_replicas_per_node", "user_config", "max_ongoing_requests",
    "max_queued_requests", "autoscaling_config", "graceful_shutdown_wait_loop_s",
    "graceful_shutdown_timeout_s", "health_check_period_s", "health_check_timeout_s",
    "logging_config", "route_prefix", "request_router_config", "max_constructor_retry_count")

_CONFIG_FIELDS = {f.name for f in dataclasses.fields(DeploymentConfig)}


def make_deployment_config(options, base=None):
    """A DeploymentConfig from a dict of @serve.deployment / .options() / config-file options."""
    values = dataclasses.asdict(base) if base is not None else {}
    if base is not None:
        values["autoscaling_config"] = base.autoscaling_config
    for key, value in options.items():
        if key in _CONFIG_FIELDS:
            values[key] = value
    num = values.get("num_replicas", 1)
    auto = values.get("autoscaling_config")
    if "num_replicas" in options and options["num_replicas"] not in (None, "auto") \
            and "autoscaling_config" not in options:
        values["autoscaling_config"] = auto = None
    if "autoscaling_config" in options and options["autoscaling_config"] is not None \
            and "num_replicas" not in options:
        values["num_replicas"] = num = None
    if num == "auto":
        merged = AutoscalingConfig.for_auto().to_dict()
        if isinstance(auto, AutoscalingConfig):
            auto = auto.to_dict()
        merged.update(auto or {})
        values["autoscaling_config"] = AutoscalingConfig.from_value(merged)
        values["num_replicas"] = None
    else:
        values["autoscaling_config"] = AutoscalingConfig.from_value(auto)
    if values.get("num_replicas") is None and values["autoscaling_config"] is None:
        values["num_replicas"] = 1
    return DeploymentConfig(**values)


@dataclasses.dataclass(frozen=True)
class HTTPOptions:
    host: str = "127.0.0.1"
    port: int = 8000
    root_path: str = ""
    request_timeout_s: Optional[float] = None
    keep_alive_timeout_s: float = 90.0
    location: str = "EveryNode"

    def __post_init__(self):
        if not isinstance(self.host, str) or not self.host:
            raise TypeError(f"http_options.host must be a non-empty str, got {self.host!r}")
        _number("http_options", "port", self.port, minimum=0, integer=True)
        if self.port > 65535:
            raise InvalidOption(f"http_options.port must be <= 65535, got {self.port}")
        _number("http_options", "request_timeout_s", self.request_timeout_s, minimum=0,
                strictly=True, allow_none=True)
        _number("http_options", "keep_alive_timeout_s", self.keep_alive_timeout_s, minimum=0, strictly=True)
        if self.location not in ("EveryNode", "HeadOnly", "Disabled", "NoServer"):
            raise InvalidOption(f"proxy location must be EveryNode, HeadOnly or Disabled, got {self.location!r}")

    @classmethod
    def from_value(cls, value, proxy_location=None):
        if value is None:
            value = {}
        if isinstance(value, cls):
            value = dataclasses.asdict(value)
        elif hasattr(value, "model_dump"):          # a pydantic model of the same shape
            value = value.model_dump()
        elif not isinstance(value, dict):
            raise TypeError(f"http_options must be a dict or HTTPOptions, got {type(value).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        ignored = {"middlewares", "num_cpus", "root_url", "ssl_keyfile", "ssl_certfile",
                   "ssl_keyfile_password", "ssl_ca_certs"}
        unknown = set(value) - known - ignored
        if unknown:
            raise InvalidOption(f"http_options has unknown key(s) {sorted(unknown)}")
        kwargs = {k: v for k, v in value.items() if k in known and v is not None}
        if proxy_location is not None:
            kwargs["location"] = str(getattr(proxy_location, "value", proxy_location))
        return cls(**kwargs)


def normalize_route_prefix(prefix):
    if prefix is None:
        return None
    if not isinstance(prefix, str):
        raise TypeError(f"route_prefix must be a str or None, got {prefix!r}")
    if not prefix.startswith("/"):
        raise InvalidOption(f"route_prefix must start with '/', got {prefix!r}")
    if len(prefix) > 1 and prefix.endswith("/"):
        raise InvalidOption(f"route_prefix must not end with '/' (unless it is '/'), got {prefix!r}")
    if "{" in prefix or "}" in prefix:
        raise InvalidOption(f"route_prefix may not contain wildcards, got {prefix!r}")
    return prefix


def ceil_div(a, b):
    return int(math.ceil(a / b))
