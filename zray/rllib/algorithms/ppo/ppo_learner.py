"""PPO's learner: fragments -> a train batch (GAE, standardized advantages) -> `num_epochs`
passes of shuffled minibatches of the clipped-surrogate loss.

    ratio     = exp(logp(a) - logp_old(a))
    surrogate = min(A * ratio, A * clip(ratio, 1 - clip_param, 1 + clip_param))
    vf_loss   = min((V - target)^2, vf_clip_param)
    loss      = mean(-surrogate + vf_loss_coeff * vf_loss - entropy_coeff * entropy)
                + kl_coeff * mean(KL(old || new))          (when use_kl_loss)

After each update `kl_coeff` adapts: x1.5 when the mean KL exceeds 2 * kl_target, x0.5 when it
is under kl_target / 2.
"""
from dataclasses import dataclass

import numpy as np
import torch

from ...core.distributions import distribution
from ...core.learner import Learner, torch_threads
from ...utils.postprocessing import (bootstrap_truncated, compute_gae, explained_variance,
                                     standardize)


@dataclass(frozen=True)
class PPOLossConfig:
    clip_param: float = 0.3
    vf_clip_param: float = 10.0
    vf_loss_coeff: float = 1.0
    entropy_coeff: float = 0.0
    use_kl_loss: bool = True
    use_critic: bool = True


def ppo_loss(cfg, kl_coeff, action_kind, dist_inputs, old_dist_inputs, actions, advantages,
             vf_preds, value_targets):
    """The loss tensor and its parts (floats) for one minibatch."""
    dist = distribution(action_kind, dist_inputs)
    old = distribution(action_kind, old_dist_inputs)
    logp, logp_old = dist.logp(actions), old.logp(actions)
    ratio = torch.exp(logp - logp_old)
    surrogate = torch.min(advantages * ratio,
                          advantages * ratio.clamp(1 - cfg.clip_param, 1 + cfg.clip_param))
    entropy = dist.entropy()
    total = -surrogate.mean() - cfg.entropy_coeff * entropy.mean()
    stats = {}
    if cfg.use_critic:
        vf_unclipped = (vf_preds - value_targets) ** 2
        vf_loss = vf_unclipped.clamp(0, cfg.vf_clip_param)
        total = total + cfg.vf_loss_coeff * vf_loss.mean()
        stats["vf_loss"] = vf_loss.mean()
        stats["vf_loss_unclipped"] = vf_unclipped.mean()
    mean_kl = old.kl(dist).mean()
    if cfg.use_kl_loss:
        total = total + kl_coeff * mean_kl
    stats.update({"policy_loss": -surrogate.mean(), "entropy": entropy.mean(),
                  "mean_kl_loss": mean_kl, "total_loss": total})
    return total, stats


def adapt_kl_coeff(kl_coeff, mean_kl, kl_target):
    if mean_kl > 2.0 * kl_target:
        return kl_coeff * 1.5
    if mean_kl < 0.5 * kl_target:
        return kl_coeff * 0.5
    return kl_coeff


class PPOLearner(Learner):
    def __init__(self, module, config):
        super().__init__(module, config)
        self.kl_coeff = float(config.kl_coeff)
        self.loss_config = PPOLossConfig(
            clip_param=float(config.clip_param), vf_clip_param=float(config.vf_clip_param),
            vf_loss_coeff=float(config.vf_loss_coeff),
            entropy_coeff=float(config.entropy_coeff), use_kl_loss=bool(config.use_kl_loss),
            use_critic=bool(config.use_critic))
        self.action_kind = module.action_spec.kind
        seed = config.seed
        self.generator = torch.Generator()
        self.generator.manual_seed(0 if seed is None else int(seed) + 7)

    # -- batch -----------------------------------------------------------------------------------
    def build_batch(self, frags):
        """Fragments -> flat tensors: obs, actions, advantages, value_targets, vf_preds."""
        c = self.config
        parts = {k: [] for k in ("obs", "actions", "advantages", "value_targets", "vf_preds")}
        with torch.no_grad():
            for f in frags:
                T, N = f.rewards.shape
                flat_obs = f.obs.reshape(T * N, -1)
                extra = [f.last_obs] + ([np.stack(list(f.final_obs.values()))]
                                        if f.final_obs else [])
                values = self.module.compute_values(
                    torch.from_numpy(np.concatenate([flat_obs] + extra))).numpy()
                v = values[:T * N].reshape(T, N)
                boot = values[T * N:T * N + N]
                finals = dict(zip(f.final_obs, values[T * N + N:]))
                rewards = bootstrap_truncated(f.rewards, finals, c.gamma)
                if not self.loss_config.use_critic:
                    v, boot = np.zeros_like(v), np.zeros_like(boot)
                adv, targets = compute_gae(rewards, v, f.terminateds | f.truncateds, boot,
                                           c.gamma, c.lambda_)
                parts["obs"].append(flat_obs)
                parts["actions"].append(f.actions.reshape((T * N,) + f.actions.shape[2:]))
                parts["advantages"].append(adv.reshape(-1))
                parts["value_targets"].append(targets.reshape(-1))
                parts["vf_preds"].append(v.reshape(-1))
        batch = {k: np.concatenate(v) for k, v in parts.items()}
        batch["advantages"] = standardize(batch["advantages"])
        return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in batch.items()}

    # -- update ----------------------------------------------------------------------------------
    def update(self, frags):
        c = self.config
        with torch_threads(self.num_threads):
            batch = self.build_batch(frags)
            n = len(batch["advantages"])
            with torch.no_grad():
                old_inputs = self.module.forward_inference(batch)["action_dist_inputs"]
            mb = min(int(c.minibatch_size), n)
            totals, count, norms = {}, 0, []
            for _ in range(int(c.num_epochs)):
                perm = torch.randperm(n, generator=self.generator)
                for start in range(0, n - mb + 1, mb):
                    idx = perm[start:start + mb]
                    out = self.module.forward_train({"obs": batch["obs"][idx]})
                    loss, stats = ppo_loss(
                        self.loss_config, self.kl_coeff, self.action_kind,
                        out["action_dist_inputs"], old_inputs[idx], batch["actions"][idx],
                        batch["advantages"][idx], out["vf_preds"], batch["value_targets"][idx])
                    norms.append(self._apply_gradients(loss))
                    for k, v in stats.items():
                        totals[k] = totals.get(k, 0.0) + float(v.detach())
                    count += 1
            self.weights_changed()
            results = {k: v / max(1, count) for k, v in totals.items()}
            results["vf_explained_var"] = explained_variance(
                batch["value_targets"].numpy(), batch["vf_preds"].numpy())
            results["curr_kl_coeff"] = self.kl_coeff
            if self.loss_config.use_kl_loss:
                self.kl_coeff = adapt_kl_coeff(self.kl_coeff, results["mean_kl_loss"],
                                               float(c.kl_target))
            results.update({
                "curr_entropy_coeff": self.loss_config.entropy_coeff,
                "default_optimizer_learning_rate": float(c.lr),
                "gradients_default_optimizer_global_norm": float(np.mean(norms)) if norms
                else 0.0,
                "num_module_steps_trained": count * mb,
                "num_trainable_parameters": self.num_trainable_parameters(),
                "module_train_batch_size_mean": mb,
            })
            return results, n, count * mb

    def get_state(self):
        return {**super().get_state(), "kl_coeff": self.kl_coeff,
                "generator": self.generator.get_state()}

    def set_state(self, state):
        super().set_state(state)
        self.kl_coeff = state["kl_coeff"]
        self.generator.set_state(state["generator"])
