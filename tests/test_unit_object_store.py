"""The store's index with the real allocator over plain memory: create, pin, spill, restore."""
import pytest

from zray import _native
from zray.exceptions import ObjectLostError, ObjectStoreFullError
from zray.store.object_store import ObjectStore

CAP = 1 << 20


@pytest.fixture
def store(tmp_path):
    memory = bytearray(CAP)
    s = ObjectStore(memoryview(memory), CAP, _native.Allocator(CAP, 64), str(tmp_path))
    yield s
    s.close()


def put(store, oid, size, fill):
    off = store.create(oid, size, "owner", "writer")
    store.view[off:off + size] = bytes([fill]) * size
    store.seal(oid, "writer")
    return off


def test_create_seal_pin_free(store):
    put(store, b"a", 1000, 7)
    off, size = store.pin(b"a", "reader")
    assert size == 1000 and store.view[off] == 7
    store.free(b"a")
    assert store.stats()["num_objects"] == 1     # still pinned
    store.unpin(b"a", "reader")
    assert store.stats()["num_objects"] == 0 and store.stats()["used"] == 0


def test_too_large_object_names_both_sizes(store):
    with pytest.raises(ObjectStoreFullError, match=f"{CAP + 1} bytes.*{CAP} bytes"):
        store.create(b"big", CAP + 1, "o", "c")


def test_spill_least_recently_used_then_restore(store, tmp_path):
    put(store, b"a", 400_000, 1)
    put(store, b"b", 400_000, 2)
    store.unpin(*store.pin(b"a", "r") and (b"a", "r"))   # touch a: b is now the oldest
    put(store, b"c", 400_000, 3)
    assert store.objects[b"b"].offset is None and (tmp_path / b"b".hex()).exists()
    off, size = store.pin(b"b", "r")
    assert store.view[off] == 2 and store.view[off + size - 1] == 2
    assert store.stats()["restore_count"] == 1


def test_pinned_objects_are_never_spilled(store):
    put(store, b"a", 600_000, 1)
    store.pin(b"a", "reader")
    with pytest.raises(ObjectStoreFullError, match="pinned"):
        store.create(b"b", 600_000, "o", "c")


def test_unknown_object_is_lost(store):
    with pytest.raises(ObjectLostError):
        store.pin(b"nope", "r")


def test_client_gone_drops_its_pins_and_unsealed_objects(store):
    put(store, b"a", 1000, 1)
    store.pin(b"a", "reader")
    store.create(b"half", 1000, "o", "crashed-writer")
    store.client_gone("crashed-writer")
    assert b"half" not in store.objects
    store.free(b"a")
    store.client_gone("reader")
    assert store.stats()["num_objects"] == 0 and store.stats()["used"] == 0


def test_a_retry_finds_its_result_already_stored(store):
    from zray.exceptions import ObjectAlreadyStoredError
    put(store, b"ret", 1000, 5)
    with pytest.raises(ObjectAlreadyStoredError):
        store.create(b"ret", 1000, "owner", "retrying-worker")
    store.create(b"half", 10, "o", "w")
    with pytest.raises(ValueError):
        store.create(b"half", 10, "o", "other")


def test_a_full_disk_loses_nothing_and_spilling_resumes_when_space_returns(store, tmp_path,
                                                                         monkeypatch):
    """Issue 10, defect 6: OutOfDiskError naming the directory and the bytes, no partial file,
    the object stays a spill candidate, and a later allocation spills once there is room."""
    import builtins
    import errno
    from zray.exceptions import OutOfDiskError
    from zray.store import object_store
    half = CAP // 2 + 1024
    put(store, b"a", half, 1)
    real_open = builtins.open

    class FullDisk:
        def __init__(self, path, mode):
            self.f = real_open(path, mode)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            self.f.write(bytes(data[:100]))     # a partial write, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(object_store, "open", FullDisk, raising=False)
    with pytest.raises(OutOfDiskError, match=f"{tmp_path}.*{half} bytes"):
        store.create(b"b", half, "owner", "writer")
    assert list(tmp_path.iterdir()) == []                  # no partial spill file
    off, size = store.pin(b"a", "reader")                  # nothing lost
    assert size == half and store.view[off] == 1
    store.unpin(b"a", "reader")
    monkeypatch.undo()                                      # space is back
    put(store, b"b", half, 2)
    assert store.stats()["spill_count"] == 1
    off, _ = store.pin(b"a", "reader")                     # restored from disk, intact
    assert store.view[off] == 1 and store.view[off + half - 1] == 1
