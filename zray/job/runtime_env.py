"""A job's runtime_env: checked at submit, built for the entrypoint by its supervisor, and handed
to the entrypoint's driver as its job-level runtime_env (as Ray: the driver's tasks and actors
run in it, merged with their own).

A job's runtime_env is zray's task runtime_env (zray/runtime_env/spec.py: env_vars, working_dir,
py_modules, excludes, pip, config) except that working_dir and py_modules entries may name a
package uploaded to the dashboard (`gcs://_ray_pkg_<hash>.zip`, in `<session>/packages/`), as
Ray's JobSubmissionClient and zray's send them. `resolve()` replaces each such URI by the path of
its uploaded .zip on this node and checks the result with spec.check: the same local-path form
`init(runtime_env=...)` takes, so the driver ships the uploaded archives as they are (no second
zip). What Ray's client adds for itself (`_ray_commit`, config's `log_files`) is dropped.
"""
import os
import re

from .model import JobError

DRIVER_ENV_VAR = "ZRAY_JOB_RUNTIME_ENV"       # JSON of the resolved runtime_env, read by init()
_PACKAGE_NAME = re.compile(r"^_ray_pkg_[0-9A-Za-z_.-]+\.zip$")


def package_path(uri, packages_dir, field):
    """The local .zip of an uploaded package URI (JobError when malformed or not uploaded)."""
    protocol, _, name = uri.partition("://")
    if protocol != "gcs" or not _PACKAGE_NAME.match(name):
        raise JobError(f"runtime_env {field!r}: {uri!r} is not a package uploaded to this "
                       "cluster (gcs://_ray_pkg_<hash>.zip); give a local directory to the "
                       "client, which uploads it")
    path = os.path.join(packages_dir, name)
    if not os.path.isfile(path):
        raise JobError(f"runtime_env {field!r}: package {uri} was not uploaded to this node "
                       "(PUT /api/packages/gcs/<name> first)")
    return path


def resolve(runtime_env, packages_dir):
    """The job's runtime_env in spec.check's checked form (uploaded packages as local .zip
    paths), or None for none. Raises JobError naming the field on anything malformed."""
    from ..runtime_env import spec
    if runtime_env is None:
        return None
    if not isinstance(runtime_env, dict):
        raise JobError(f"runtime_env must be a dict, got {type(runtime_env).__name__}")
    env = {k: v for k, v in runtime_env.items() if not k.startswith("_ray")}
    config = env.get("config")
    if isinstance(config, dict) and "log_files" in config:
        # Ray's client fills this in (setup log files to stream); zray puts pip's tail in the
        # job's message instead.
        env["config"] = {k: v for k, v in config.items() if k != "log_files"}
    working_dir = env.get("working_dir")
    if isinstance(working_dir, str) and "://" in working_dir:
        env["working_dir"] = package_path(working_dir, packages_dir, "working_dir")
    modules = env.get("py_modules")
    if isinstance(modules, (list, tuple)):
        env["py_modules"] = [package_path(m, packages_dir, "py_modules")
                             if isinstance(m, str) and "://" in m else m for m in modules]
    try:
        return spec.check(env)
    except (TypeError, ValueError, OSError) as exc:
        raise JobError(f"invalid runtime_env: {exc}") from None


def merge_for_driver(job_env, init_env, override=False):
    """The driver's job-level runtime_env when its script also gives init(runtime_env=...), as
    Ray: both kept field by field (env_vars key by key); a field or env var named by both is a
    ValueError, unless `override` (RAY_OVERRIDE_JOB_RUNTIME_ENV=1 / ZRAY_...): then init's wins."""
    from ..runtime_env import spec
    if not init_env:
        return job_env
    if not isinstance(init_env, dict):
        raise TypeError(f"runtime_env must be a dict, not {type(init_env).__name__}")
    job_env = job_env or {}
    if not override:
        both = (set(job_env) & set(init_env)) - {"env_vars"}
        both |= set(job_env.get("env_vars") or {}) & set(init_env.get("env_vars") or {})
        if both:
            raise ValueError(
                f"zray.init(runtime_env=...) names {sorted(both)}, which the submitted job's "
                "runtime_env sets too; set ZRAY_OVERRIDE_JOB_RUNTIME_ENV=1 (or "
                "RAY_OVERRIDE_JOB_RUNTIME_ENV=1) to let init()'s win")
    return spec.merge(job_env, init_env)
