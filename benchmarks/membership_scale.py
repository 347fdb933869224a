"""How SWIM membership scales: rounds to converge after a join and to detect a failure, for
N = 16 ... 1024 members, run in one process with virtual time and the in-memory network
(zray.mesh.simulation). A round is one probe interval.

    python -m benchmarks.membership_scale [--max 1024] [--seeds 3]
"""
import argparse
import math
import statistics
import time

from zray.mesh.simulation import SimulatedMesh
from zray.mesh.swim import ALIVE, SwimConfig


def measure(n, seed, config):
    mesh = SimulatedMesh(n, config=config, seed=seed, tick=0.02 if n > 128 else 0.01)
    mesh.run_until(lambda: False, config.probe_interval)
    newcomer = mesh.add_member(join=True)
    join = mesh.run_until(lambda: mesh.all_see(newcomer, {ALIVE}), 120)
    victim = "m1"
    mesh.kill(victim)
    sent_before = mesh.messages_sent
    detect = mesh.run_until(lambda: mesh.all_dead_to_all(victim), 300)
    per_member_per_round = (mesh.messages_sent - sent_before) / n / (detect / config.probe_interval)
    return join / config.probe_interval, detect / config.probe_interval, per_member_per_round


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--max", type=int, default=1024)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args(argv)
    config = SwimConfig()
    sizes = [n for n in (16, 32, 64, 128, 256, 512, 1024) if n <= args.max]
    print(f"probe interval {config.probe_interval}s; a round is one probe interval")
    print(f"{'N':>6} {'log2 N':>7} {'join rounds':>12} {'detect rounds':>14} "
          f"{'suspicion rounds':>17} {'msgs/member/round':>18} {'wall s':>7}")
    for n in sizes:
        start = time.time()
        runs = [measure(n, seed, config) for seed in range(args.seeds)]
        join = statistics.mean(r[0] for r in runs)
        detect = statistics.mean(r[1] for r in runs)
        msgs = statistics.mean(r[2] for r in runs)
        suspicion = config.suspicion_timeout(n) / config.probe_interval
        print(f"{n:>6} {math.log2(n):>7.1f} {join:>12.2f} {detect:>14.2f} {suspicion:>17.2f} "
              f"{msgs:>18.2f} {time.time() - start:>7.1f}", flush=True)


if __name__ == "__main__":
    main()
