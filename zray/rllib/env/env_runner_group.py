"""EnvRunnerGroup: the env runners of an algorithm, local or as zray actors.

With `num_env_runners=0` one EnvRunner samples in the driver; otherwise each runner is an actor
(`num_cpus_per_env_runner` CPUs each) and one `sample` call is one round trip per runner: the
weights go out with the call (put once, shared by every runner) and a Fragment comes back.
Every wait has the config's `sample_timeout_s`; an env that raises fails the call with the
env's traceback (a RayTaskError that is also the env's exception type).
"""
import logging

from .env_runner import EnvRunner

logger = logging.getLogger("zray.rllib")


class EnvRunnerGroup:
    def __init__(self, env_creator, env_config, num_env_runners, num_envs_per_env_runner, seed,
                 policy_kind, num_cpus_per_env_runner=1, sample_timeout_s=60.0,
                 worker_index_offset=0):
        self.num_env_runners = int(num_env_runners)
        self.sample_timeout_s = sample_timeout_s
        self.local = None
        self.remote = []
        kwargs = dict(env_creator=env_creator, env_config=env_config,
                      num_envs=num_envs_per_env_runner, num_workers=self.num_env_runners,
                      seed=seed, policy_kind=policy_kind)
        if self.num_env_runners == 0:
            self.local = EnvRunner(worker_index=worker_index_offset, **kwargs)
            return
        import zray
        cls = zray.remote(num_cpus=num_cpus_per_env_runner)(EnvRunner)
        self.remote = [cls.remote(worker_index=worker_index_offset + i + 1, **kwargs)
                       for i in range(self.num_env_runners)]

    @property
    def num_envs(self):
        return max(1, self.num_env_runners)

    def sample(self, num_steps, net, epsilon=None, explore=True):
        """One fragment of `num_steps` steps per env from every runner, in runner order."""
        if self.local is not None:
            return [self.local.sample(num_steps, net, epsilon, explore)]
        import zray
        net_ref = zray.put(net)
        refs = [r.sample.remote(num_steps, net_ref, epsilon, explore) for r in self.remote]
        return zray.get(refs, timeout=self.sample_timeout_s)

    def sample_episodes(self, num_episodes, net, explore):
        """At least `num_episodes` fresh episodes, split over the runners; EpisodeReports."""
        if self.local is not None:
            return [self.local.sample_episodes(num_episodes, net, explore)]
        import zray
        n = len(self.remote)
        shares = [num_episodes // n + (1 if i < num_episodes % n else 0) for i in range(n)]
        net_ref = zray.put(net)
        refs = [r.sample_episodes.remote(k, net_ref, explore)
                for r, k in zip(self.remote, shares) if k > 0]
        return zray.get(refs, timeout=self.sample_timeout_s)

    def wait_ready(self, timeout):
        if self.remote:
            import zray
            zray.get([r.ping.remote() for r in self.remote], timeout=timeout)

    def stop(self):
        if self.local is not None:
            self.local.stop()
        if self.remote:
            import zray
            for r in self.remote:
                try:
                    zray.kill(r)
                except Exception:   # the cluster may already be gone at interpreter exit
                    logger.debug("killing an env runner failed", exc_info=True)
            self.remote = []
