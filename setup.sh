#!/usr/bin/env bash
# Set up a fresh machine for zray development: Debian packages the tests need (as root:
# iproute2 for the multi-host tests in network namespaces; chromium for the dashboard's test; openmpi-bin for the Open MPI launch test; wrk for the Serve benchmark; slurmctld/slurmd and libpmix-dev for
# the tests that run a real Slurm on this host), then zray itself with every extra its tests use
# (this builds the C extension in native/; torch is pinned to a CPU build).
set -euo pipefail
cd "$(dirname "$0")"
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  missing=()
  command -v ip >/dev/null || missing+=(iproute2)
  command -v slurmctld >/dev/null || [ -x /usr/sbin/slurmctld ] || missing+=(slurmctld)
  command -v slurmd >/dev/null || [ -x /usr/sbin/slurmd ] || missing+=(slurmd)
  dpkg -s libpmix-dev >/dev/null 2>&1 || missing+=(libpmix-dev)
  command -v chromium >/dev/null || missing+=(chromium)   # the dashboard's browser test
  command -v mpirun.openmpi >/dev/null || missing+=(openmpi-bin)   # the Open MPI launch test
  command -v wrk >/dev/null || missing+=(wrk)             # the Serve benchmark's load generator
  if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
  fi
  # Open MPI stays reachable as mpirun.openmpi only: plain mpirun/mpiexec/mpicc remain the
  # pip MPICH's that mpi4py is built for, whatever the order of PATH.
  update-alternatives --remove mpirun /usr/bin/mpirun.openmpi >/dev/null 2>&1 || true
  update-alternatives --remove mpi /usr/bin/mpicc.openmpi >/dev/null 2>&1 || true
fi
pip install -e '.[test]'
