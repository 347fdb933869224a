"""zray.data's errors. `UserCodeException` carries Ray's name: a UDF (or a datasource's read
function) raised; the user's exception is its __cause__."""
import zray.exceptions as _exc

UserCodeException = getattr(_exc, "UserCodeException", None)
if UserCodeException is None:
    class UserCodeException(_exc.RayError):
        """A user-defined function of a Dataset raised; see __cause__ for the original."""
