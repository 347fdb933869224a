"""Object identity, references, serialization and owner-side reference counting."""
