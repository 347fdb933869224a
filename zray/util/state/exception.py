"""Ray's import path for the state API's error."""
from .api import RayStateApiException

__all__ = ["RayStateApiException"]
