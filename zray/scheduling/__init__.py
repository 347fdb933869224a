"""Deciding where and when tasks run: resources, the task spec, the node-local scheduler."""
