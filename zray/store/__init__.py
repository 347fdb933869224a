"""The node's shared-memory object store: one memfd region, an allocator, spilling to disk."""
