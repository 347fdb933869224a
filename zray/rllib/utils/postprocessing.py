"""Generalized advantage estimation on time-major fragments, and advantage standardization.

Conventions (shape (T, N): T steps of N envs):
- `dones[t]` ends the episode after step t (terminated or truncated);
- a truncated step's reward already includes `gamma * V(final_obs)` (see `bootstrap_truncated`),
  so every done is treated as terminal here;
- `bootstrap_values` (N,) is V of the observation after the last step.

    delta[t] = r[t] + gamma * (1 - done[t]) * V[t+1] - V[t]
    A[t]     = delta[t] + gamma * lambda * (1 - done[t]) * A[t+1]
    target[t] = A[t] + V[t]
"""
import numpy as np


def bootstrap_truncated(rewards, final_values, gamma):
    """rewards with `gamma * V(final_obs)` added at truncated steps; final_values maps
    (t, n) -> V. Returns a new array."""
    if not final_values:
        return rewards
    out = np.array(rewards, dtype=np.float32, copy=True)
    for (t, n), v in final_values.items():
        out[t, n] += gamma * v
    return out


def compute_gae(rewards, values, dones, bootstrap_values, gamma, lambda_):
    """(advantages, value_targets), both (T, N) float32."""
    rewards = np.asarray(rewards, np.float32)
    values = np.asarray(values, np.float32)
    not_done = 1.0 - np.asarray(dones, np.float32)
    T = rewards.shape[0]
    adv = np.zeros_like(rewards)
    next_value = np.asarray(bootstrap_values, np.float32)
    last = np.zeros_like(next_value)
    for t in range(T - 1, -1, -1):
        delta = rewards[t] + gamma * not_done[t] * next_value - values[t]
        last = delta + gamma * lambda_ * not_done[t] * last
        adv[t] = last
        next_value = values[t]
    return adv, adv + values


def standardize(x, eps=1e-8):
    x = np.asarray(x, np.float32)
    return (x - x.mean()) / (x.std() + eps) if x.size > 1 else x - x.mean()


def explained_variance(targets, preds):
    """1 - Var(targets - preds) / Var(targets), -1 where Var(targets) is 0 (RLlib's form)."""
    targets, preds = np.asarray(targets), np.asarray(preds)
    var = targets.var()
    if var == 0:
        return -1.0
    return float(max(-1.0, 1.0 - (targets - preds).var() / var))
