"""The algorithms' pieces as plain functions and objects: advantages, replay, schedules,
metrics."""
