"""Launching zray under HPC launchers (srun, mpirun) and sizing nodes from their allocation."""
