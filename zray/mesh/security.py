"""The cluster secret, and the CURVE keys every TCP peer derives from it.

Every node of a cluster holds the same secret: generated at the first node's start into its
session directory (0600), or given by ZRAY_CLUSTER_SECRET / --secret-file. From it each node
derives one CURVE key pair; every TCP endpoint is a CURVE server with it and every TCP
connection a CURVE client that expects it. A peer without the secret cannot know the server's
public key, so its handshake fails before any byte reaches zray: nothing it sends is ever
unpickled. The ipc endpoints inside a host need none of this: their socket files live in
0700 directories of the user.
"""
import hashlib
import os

import zmq
from zmq.utils import z85

SECRET_ENV = "ZRAY_CLUSTER_SECRET"
SECRET_FILE = "cluster.secret"


class CurveKeys:
    __slots__ = ("public", "secret")

    def __init__(self, cluster_secret):
        if not cluster_secret:
            raise ValueError("the cluster secret is empty")
        if not zmq.has("curve"):
            raise RuntimeError("this libzmq has no CURVE support; zray needs it for TCP peers")
        seed = hashlib.sha256(b"zray-curve-v1:" + cluster_secret.encode()).digest()
        self.secret = z85.encode(seed)
        self.public = zmq.curve_public(self.secret)

    def make_server(self, sock):
        sock.curve_server = True
        sock.curve_secretkey = self.secret
        sock.curve_publickey = self.public

    def make_client(self, sock):
        sock.curve_serverkey = self.public
        sock.curve_publickey = self.public
        sock.curve_secretkey = self.secret


def load_secret(secret_file=None):
    """The secret from --secret-file, else the environment, else None."""
    if secret_file:
        with open(secret_file) as f:
            secret = f.read().strip()
        if not secret:
            raise ValueError(f"the cluster secret file {secret_file} is empty")
        return secret
    return os.environ.get(SECRET_ENV) or None


def generate_secret(directory, secret=None):
    """A new random secret (or the one given), written to <directory>/cluster.secret with
    0600 rights."""
    secret = secret or os.urandom(32).hex()
    path = os.path.join(directory, SECRET_FILE)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret + "\n")
    return secret, path
