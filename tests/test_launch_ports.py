"""The seed port check of `python -m zray.launch` (launcher.port_free) on real sockets: a port
someone listens on is taken; one whose earlier connections linger in TIME_WAIT is free, as it
is for the node's ZeroMQ listener (SO_REUSEADDR)."""
import socket

import zmq

from zray.launch.launcher import port_free


def test_a_listened_port_is_taken_and_a_closed_one_free():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert port_free("127.0.0.1", port) is False
    assert port_free("127.0.0.1", port) is True


def test_a_port_in_time_wait_is_free_as_zeromq_sees_it():
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # as ZeroMQ's listener
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    conn, _ = listener.accept()
    conn.close()                 # the listening side closes first: its end waits in TIME_WAIT
    client.recv(1)
    client.close()
    listener.close()
    with socket.socket() as plain:           # what the check did before: refused
        try:
            plain.bind(("127.0.0.1", port))
            lingering = False
        except OSError:
            lingering = True
    assert port_free("127.0.0.1", port) is True
    ctx = zmq.Context()
    try:
        router = ctx.socket(zmq.ROUTER)
        router.bind(f"tcp://127.0.0.1:{port}")     # the node binds it all the same
        router.close(linger=0)
    finally:
        ctx.term()
    assert lingering, "no TIME_WAIT left: the case this test is about did not arise"
