"""`zray.tune.registry.register_env`: environments by name, for zray.rllib (Ray's import path).

The registry itself lives in zray/rllib/env_registry.py, which imports neither torch nor
gymnasium; this module only gives it the name Ray programs import it by.
"""
from ..rllib.env_registry import register_env

__all__ = ["register_env"]
