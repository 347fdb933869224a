"""Env runners: actors that step vectorized environments with the current policy."""
from ..env_registry import EnvContext
from .env_runner import EnvRunner, Fragment
from .env_runner_group import EnvRunnerGroup

__all__ = ["EnvContext", "EnvRunner", "EnvRunnerGroup", "Fragment"]
