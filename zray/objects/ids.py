"""Identifiers. Object ids embed the id of the task that created them, so lineage can be found
from an object id alone: 12 bytes of task id, then a 4-byte index (returns count from 1, `put`
objects have the top bit set)."""
import itertools
import os
import struct

TASK_ID_SIZE = 12
OBJECT_ID_SIZE = 16
PUT_FLAG = 0x8000_0000
_INDEX = struct.Struct("<I")


class TaskIdFactory:
    """Task ids unique across processes: an 8-byte random process prefix and a counter."""

    def __init__(self):
        self._prefix = os.urandom(8)
        self._counter = itertools.count(1)

    def next(self):
        return self._prefix + _INDEX.pack(next(self._counter) & 0xFFFF_FFFF)


def return_object_id(task_id, index):
    return task_id + _INDEX.pack(index + 1)


def put_object_id(task_id, put_index):
    return task_id + _INDEX.pack(PUT_FLAG | put_index)


def task_of(object_id):
    return object_id[:TASK_ID_SIZE]


def random_id(size=16):
    return os.urandom(size)
