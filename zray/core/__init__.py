"""The runtime inside every zray process: owning objects, submitting tasks, running them."""
