"""A joblib backend that runs joblib's batches on zray: `register_ray()`, then

    with joblib.parallel_backend("ray"):          # or parallel_config(backend="ray")
        Parallel(n_jobs=4)(delayed(f)(x) for x in xs)

Batches go to a zray.util.multiprocessing.Pool, so they run on the cluster's processes (any
node), not in forks of the caller. `n_jobs=-1` means every CPU of the cluster; more jobs than
the cluster has CPUs raises ValueError, as the pool does. The backend is registered as "ray"
(the name Ray programs use) and as "zray". joblib is an extra: `pip install zray[joblib]`.
"""


def register_ray():
    """Register the backend with joblib under the names "ray" and "zray"."""
    try:
        import joblib
    except ImportError as exc:
        raise ImportError("zray.util.joblib needs joblib: pip install 'zray[joblib]' "
                          "(or pip install joblib)") from exc
    from .backend import ZrayBackend
    joblib.register_parallel_backend("ray", ZrayBackend)
    joblib.register_parallel_backend("zray", ZrayBackend)


__all__ = ["register_ray"]
