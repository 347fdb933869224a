"""zray.util: ActorPool, Queue and multiprocessing.Pool, used the way their Ray twins are."""
import time

import pytest

import zray
from zray.util import ActorPool
from zray.util.multiprocessing import Pool
from zray.util.queue import Empty, Full, Queue


@pytest.fixture(scope="module")
def cluster():
    zray.init(num_cpus=2)
    yield
    zray.shutdown()


@zray.remote
class Doubler:
    def double(self, x):
        time.sleep(0.01 * (x % 3))
        return 2 * x


def test_actor_pool_map_keeps_order(cluster):
    pool = ActorPool([Doubler.remote(), Doubler.remote()])
    assert list(pool.map(lambda a, v: a.double.remote(v), range(10))) == [2 * i for i in range(10)]


def test_actor_pool_map_unordered_gives_everything(cluster):
    pool = ActorPool([Doubler.remote(), Doubler.remote()])
    out = list(pool.map_unordered(lambda a, v: a.double.remote(v), range(10)))
    assert sorted(out) == [2 * i for i in range(10)]


def test_actor_pool_submit_get_next_and_idle_management(cluster):
    a, b = Doubler.remote(), Doubler.remote()
    pool = ActorPool([a, b])
    assert pool.has_free()
    for v in range(4):
        pool.submit(lambda actor, x: actor.double.remote(x), v)
    assert not pool.has_free()
    assert pool.has_next()
    assert [pool.get_next() for _ in range(4)] == [0, 2, 4, 6]
    assert not pool.has_next()
    idle = pool.pop_idle()
    assert idle in (a, b)
    with pytest.raises(ValueError):
        pool.push(pool._idle[0])
    pool.push(idle)
    pool.submit(lambda actor, x: actor.double.remote(x), 5)
    assert pool.get_next_unordered() == 10
    with pytest.raises(StopIteration):
        pool.get_next()


def test_actor_pool_get_next_timeout(cluster):
    @zray.remote
    class Slow:
        def f(self, x):
            time.sleep(2)
            return x

    pool = ActorPool([Slow.remote()])
    pool.submit(lambda a, v: a.f.remote(v), 1)
    with pytest.raises(TimeoutError):
        pool.get_next(timeout=0.1)


def test_queue_put_get_and_sizes(cluster):
    q = Queue(maxsize=3)
    assert q.empty() and not q.full() and q.qsize() == 0
    q.put(1)
    q.put_nowait(2)
    q.put_nowait_batch([3])
    assert q.full() and q.size() == 3 and len(q) == 3
    with pytest.raises(Full):
        q.put_nowait(4)
    with pytest.raises(Full):
        q.put(4, timeout=0.1)
    with pytest.raises(Full):
        q.put_nowait_batch([4, 5])
    assert q.get() == 1
    assert q.get_nowait_batch(2) == [2, 3]
    with pytest.raises(Empty):
        q.get_nowait()
    with pytest.raises(Empty):
        q.get(timeout=0.1)
    with pytest.raises(Empty):
        q.get_nowait_batch(1)
    with pytest.raises(ValueError):
        q.get(timeout=-1)
    q.put("still works")
    assert q.get(block=False) == "still works"


def test_queue_shared_by_tasks_and_actors(cluster):
    q = Queue()

    @zray.remote
    def producer(queue, n):
        for i in range(n):
            queue.put(i)
        return n

    @zray.remote
    class Consumer:
        def take(self, queue, n):
            return [queue.get(timeout=30) for _ in range(n)]

    c = Consumer.remote()
    got = c.take.remote(q, 20)
    assert zray.get(producer.remote(q, 20)) == 20
    assert sorted(zray.get(got)) == list(range(20))


def test_queue_blocking_get_waits_for_a_put(cluster):
    q = Queue()

    @zray.remote
    def late_put(queue):
        time.sleep(0.3)
        queue.put("late")

    late_put.remote(q)
    assert q.get(timeout=30) == "late"


def _square(x):
    return x * x


def _add(a, b):
    return a + b


_init_value = None


def _set_init(v):
    global _init_value
    _init_value = v


def _read_init(_):
    return _init_value


def _fail(x):
    if x == 3:
        raise ValueError("three")
    return x


def test_multiprocessing_pool_is_a_drop_in(cluster):
    with Pool(processes=2) as pool:
        assert pool.map(_square, range(10)) == [x * x for x in range(10)]
        assert list(pool.imap(_square, range(5))) == [0, 1, 4, 9, 16]
        assert sorted(pool.imap_unordered(_square, range(5))) == [0, 1, 4, 9, 16]
        assert pool.starmap(_add, [(1, 2), (3, 4)]) == [3, 7]
        assert pool.apply(_add, (2, 3)) == 5
        result = pool.apply_async(_square, (7,))
        assert result.get(timeout=30) == 49 and result.ready() and result.successful()
        assert pool.map_async(_square, [1, 2]).get(timeout=30) == [1, 4]
        with pytest.raises(ValueError, match="three"):
            pool.map(_fail, range(5))
        assert pool.map(_square, [3]) == [9]


def test_multiprocessing_pool_initializer_runs_in_each_process(cluster):
    with Pool(processes=2, initializer=_set_init, initargs=("ready",)) as pool:
        assert set(pool.map(_read_init, range(6), chunksize=1)) == {"ready"}


def test_multiprocessing_pool_closed_rejects_work(cluster):
    pool = Pool(processes=1)
    pool.close()
    with pytest.raises(ValueError):
        pool.map(_square, [1])
    pool.join()
    pool.terminate()
