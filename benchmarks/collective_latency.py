"""Where the time of one small allreduce goes: the mpi backend beside the MPI calls under it.

    mpiexec -n 2 python benchmarks/collective_latency.py [--bytes 4096] [--calls 20000]

Rows, each the mean over --calls back-to-back calls after a warm-up (rank 0 prints; every
rank runs the same calls):
  raw Allreduce            comm.Allreduce(IN_PLACE): the benchmark's "raw mpi4py"
  raw Iallreduce+Test      the nonblocking call zray polls (MPI moves data inside Test)
  floor: verify + data     a persistent 10-int64 MIN-allreduce restarted, then the
                           Iallreduce: what the mpi backend's calls cost in MPI alone
  zray allreduce           zray.util.collective.allreduce on the job's communicator
                           (init_collective_group_from_world), verify_calls on (the default)
  zray, verify_calls=False the same group without the verification round trip
Ratios are to raw Allreduce. The rows the backend cannot go below are the floor's: the
verification is a second round trip, which alone is ~2x raw at 4 KiB.
"""
import argparse
import sys
import time


def _mean_us(comm, fn, calls):
    for _ in range(min(calls, 300)):
        fn()
    comm.Barrier()
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t0) / calls * 1e6


def _poll(req):
    while not req.Test():
        pass


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bytes", type=int, default=4096)
    ap.add_argument("--calls", type=int, default=20000)
    a = ap.parse_args(argv)
    import numpy as np
    from mpi4py import MPI
    import zray.util.collective as col
    comm = MPI.COMM_WORLD.Dup()
    x = np.zeros(max(1, a.bytes // 4), np.float32)
    row, out = np.arange(10, dtype=np.int64), np.empty(10, np.int64)
    verify = comm.Allreduce_init(row, out, MPI.MIN)

    def floor():
        verify.Start()
        _poll(verify)
        _poll(comm.Iallreduce(MPI.IN_PLACE, x, MPI.SUM))

    rows = [("raw Allreduce", lambda: comm.Allreduce(MPI.IN_PLACE, x, MPI.SUM)),
            ("raw Iallreduce+Test", lambda: _poll(comm.Iallreduce(MPI.IN_PLACE, x, MPI.SUM))),
            ("floor: verify + data", floor)]
    col.init_collective_group_from_world("mpi", "checked")
    col.init_collective_group_from_world(
        "mpi", "unchecked", config=col.CollectiveConfig(verify_calls=False))
    rows += [("zray allreduce", lambda: col.allreduce(x, "checked")),
             ("zray, verify_calls=False", lambda: col.allreduce(x, "unchecked"))]
    results = [(label, _mean_us(comm, fn, a.calls)) for label, fn in rows]
    verify.Free()
    col.destroy_collective_group("checked")
    col.destroy_collective_group("unchecked")
    if comm.Get_rank() == 0:
        raw = results[0][1]
        print(f"# allreduce of {a.bytes} bytes, float32, {comm.Get_size()} ranks, mean of "
              f"{a.calls} calls")
        print(f"{'':28} {'us':>8} {'x raw':>8}")
        for label, us in results:
            print(f"{label:28} {us:8.2f} {us / raw:8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
