"""BackendConfig: what a framework sets up in each worker around the training loop."""


class BackendConfig:
    """No framework: the loop runs as given. Subclasses (TorchConfig) set up and tear down
    their process group in each worker; they are pickled to the workers."""

    # Imported by each worker as soon as it starts, while the group is still being placed.
    preload_modules = ()

    def on_worker_start(self, context):
        """In each worker, before the loop (MASTER_ADDR, RANK, ... are in os.environ)."""

    def on_worker_end(self, context):
        """In each worker, after the loop (also when it raised)."""
