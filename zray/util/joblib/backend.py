"""ZrayBackend: joblib's pool-based backend protocol over zray.util.multiprocessing.Pool.

joblib drives a pool backend through `configure` (make the pool, say how many workers),
`submit`/`apply_async` (PoolManagerMixin: each batch with a callback joblib waits on) and
`terminate`; AutoBatchingMixin sizes batches from their measured duration.
"""
from joblib._parallel_backends import AutoBatchingMixin, ParallelBackendBase, PoolManagerMixin

from ... import api as zray
from ..multiprocessing import Pool


def _cluster_cpus():
    if not zray.is_initialized():
        zray.init()
    return int(zray.cluster_resources().get("CPU", 0))


class ZrayBackend(PoolManagerMixin, AutoBatchingMixin, ParallelBackendBase):
    supports_retrieve_callback = True
    supports_return_generator = False
    supports_timeout = True

    def __init__(self, nesting_level=None, ray_remote_args=None, **kwargs):
        super().__init__(nesting_level=nesting_level, **kwargs)
        self.ray_remote_args = ray_remote_args

    def effective_n_jobs(self, n_jobs):
        if n_jobs == 0:
            raise ValueError("n_jobs == 0 in Parallel has no meaning")
        if n_jobs is None:
            return 1
        if n_jobs < 0:
            return max(_cluster_cpus() + 1 + n_jobs, 1)
        return n_jobs

    def configure(self, n_jobs=1, parallel=None, prefer=None, require=None, **kwargs):
        n_jobs = self.effective_n_jobs(n_jobs)
        self._pool = Pool(processes=n_jobs, ray_remote_args=self.ray_remote_args)
        self.parallel = parallel
        return n_jobs

    def terminate(self):
        super().terminate()
        self.reset_batch_stats()
