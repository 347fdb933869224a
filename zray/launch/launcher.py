"""`python -m zray.launch [options] app.py [args]`: every rank of an srun/mpirun job a zray node.

One process per rank (srun, mpirun/mpiexec, or plain python for a world of one):

    1. who am I (launch/world.py) and what was I given (launch/allocation.py);
    2. the ranks meet (launch/plan.py): the seed's address and the cluster secret travel over
       MPI, or are derived from Slurm's step, or come from --address and ZRAY_CLUSTER_SECRET;
    3. each rank starts its node through the one bootstrap (zray/node/bootstrap.py), joined to
       the seed's mesh, and rank 0 waits until every rank's node is a member. The node daemon
       is forked from this process (no second interpreter; not after MPI_Init) and defers what
       no first task waits for (zray/node/warmup.py); rank 0 logs the start's phases;
    4. driver mode: rank 0 runs app.py in this process (`zray.init()` in it joins this node
       through ZRAY_ADDRESS) while the other ranks serve; `--spmd`: every rank runs app.py;
    5. the job ends when the app ends (its exit code is the launcher's), when a node of the job
       dies (unless --tolerate-node-loss), or on SIGTERM (scancel, time limit): the node is
       stopped and its session removed within Slurm's KillWait.

Every wait has a deadline or a death signal behind it: formation has --formation-timeout; the
serving ranks watch the seed's node and their own.
"""
import argparse
import importlib.util
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

from . import allocation, plan
from ..node.local_node import free_port
from . import world as worlds

log = logging.getLogger("zray.launch")

WATCH_INTERVAL_S = 0.25
STOP_GRACE_S = 3.0    # within Slurm's KillWait (5 s here, 30 s by default)


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m zray.launch",
        description="Run app.py on a zray cluster made of the ranks of this srun/mpirun job.")
    parser.add_argument("--spmd", action="store_true",
                        help="run app.py on every rank (default: rank 0 is the driver)")
    parser.add_argument("--address", default=None,
                        help="HOST:PORT of a live member to join instead of meeting over "
                             "MPI or Slurm")
    parser.add_argument("--interface", default=os.environ.get("ZRAY_IFNAME"),
                        help="network interface whose address nodes use (ZRAY_IFNAME)")
    parser.add_argument("--node-per-host", action="store_true",
                        help="one node per host with the host's allocation (default: one per rank)")
    parser.add_argument("--formation-timeout", type=float, default=plan.FORMATION_TIMEOUT_S,
                        help="seconds for every rank's node to join (default %(default)s)")
    parser.add_argument("--tolerate-node-loss", action="store_true",
                        help="keep running when a node of the job dies")
    parser.add_argument("--object-store-memory", type=int, default=None,
                        help="bytes per node (default: 30%% of the node's memory, <= 2 GiB)")
    parser.add_argument("--no-prefix", action="store_true",
                        help="do not prefix this rank's output with its rank and node")
    parser.add_argument("app", help="the Python script to run")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="its arguments")
    args = parser.parse_args(argv)
    if args.formation_timeout <= 0:
        parser.error(f"--formation-timeout must be > 0, got {args.formation_timeout}")
    if not os.path.isfile(args.app):
        parser.error(f"no such script: {args.app}")
    return args


# -- addresses -----------------------------------------------------------------------------------
def host_address(name):
    """The IP of a Slurm node name: Slurm's NodeAddr first (emulated and renamed nodes), DNS
    second."""
    try:
        out = subprocess.run(["scontrol", "show", "node", "-o", name], capture_output=True,
                             text=True, timeout=10).stdout
        for field in out.split():
            if field.startswith("NodeAddr="):
                return field.split("=", 1)[1]
    except (OSError, subprocess.TimeoutExpired):
        pass
    try:
        return socket.getaddrinfo(name, None)[0][4][0]
    except OSError as exc:
        raise plan.LaunchError(f"cannot resolve the seed host {name!r}: {exc}") from exc


def own_ip(interface, seed_ip=None):
    """This rank's IP (transport/host_ip.py has the one policy, shared with `zray start`)."""
    from ..transport import host_ip
    try:
        ip, how = host_ip.own_ip(interface, seed_ip)
    except host_ip.InterfaceError as exc:
        raise plan.LaunchError(str(exc)) from None
    log.debug("this rank's address: %s (%s)", ip, how)
    return ip


def port_free(ip, port):
    """Whether the node could listen on `port`: no socket listens there. SO_REUSEADDR as the
    node's ZeroMQ listener sets it: connections of an earlier node on the port that linger in
    TIME_WAIT (60 s after a seed that left first) do not make it taken, else a job whose id
    repeats soon after (a fresh Slurm's job ids) would find every derived seed port taken."""
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((ip, port))
            return True
        except OSError:
            return False


def join_address(ip, port):
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


# -- the secret ----------------------------------------------------------------------------------
def cluster_secret(world, rendezvous, comm=None):
    """The job's secret: the launcher's ZRAY_CLUSTER_SECRET, else made by rank 0 and sent over
    MPI, else (srun without MPI) derived from the job with a warning: the hpc_scripts export
    one, so only a bare `srun` without it gets here."""
    secret = os.environ.get("ZRAY_CLUSTER_SECRET")
    if secret:
        return secret
    if rendezvous.mode == "mpi":
        return comm.bcast(_new_secret() if world.rank == 0 else None, root=0)
    if rendezvous.mode == "single":
        return _new_secret()
    log.warning("no ZRAY_CLUSTER_SECRET in the environment: the job's secret is derived from "
                "its Slurm job and step ids, which other users of the cluster can read. Export "
                "ZRAY_CLUSTER_SECRET (hpc_scripts/*.sbatch do) or launch under MPI.")
    import hashlib
    return hashlib.sha256(f"zray-launch:{world.job_key}:{os.getuid()}".encode()).hexdigest()


def _new_secret():
    # what secrets.token_hex(32) returns, without importing secrets (hmac, hashlib: ~7 ms on
    # every rank's start)
    return os.urandom(32).hex()


def write_secret(session_dir, secret):
    path = os.path.join(session_dir, "cluster.secret")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret)
    return path


# -- output ----------------------------------------------------------------------------------------
class PrefixedStream:
    """A text stream that starts every line with a prefix ("[rank 2 n3] ")."""

    def __init__(self, stream, prefix):
        self._stream = stream
        self._prefix = prefix
        self._at_line_start = True
        self._lock = threading.Lock()

    def write(self, text):
        with self._lock:
            out = []
            for piece in text.splitlines(keepends=True):
                if self._at_line_start:
                    out.append(self._prefix)
                out.append(piece)
                self._at_line_start = piece.endswith("\n")
            self._stream.write("".join(out))
        return len(text)

    def __getattr__(self, name):
        return getattr(self._stream, name)


# -- the launch ------------------------------------------------------------------------------------
class Launch:
    """One rank's launch: the node it started, how to watch the job, how to end."""

    def __init__(self, args, world, alloc, entered=None):
        self.args = args
        self.world = world
        self.alloc = alloc
        self.share = plan.node_share(world, alloc, args.node_per_host)
        self.node = None
        self.session_dir = None
        self.node_info = None
        self.node_client = None
        self.stopping = threading.Event()
        self.exit_code = None
        self.api_import = None     # the thread importing zray's API while the node starts
        self.began = time.monotonic() if entered is None else entered   # main() began
        self.node_ready = None
        # (phase, when it ended): rank 0 logs them once its cluster formed (plan.phase_summary)
        self.phases = [("", _process_began(self.began)), ("interpreter and imports", self.began),
                       ("world and allocation", time.monotonic())]
        self.rendezvous_file = None    # "local" rendezvous, rank 0: the file the others read
        self.met_over_mpi = False      # MPI works in this process (the SPMD group may use it)

    # each step is a method, called in this order by run()
    def meet(self):
        """Rendezvous: (seed join string or None, my port, secret)."""
        comm = None
        mpi_ok = False
        mismatch = None
        if self.world.mpi and self.args.address is None:
            mismatch = mpi_mismatch(self.world)
            if mismatch:
                log.info("not using MPI to meet: %s", mismatch)
            else:
                try:
                    from mpi4py import MPI
                    if not MPI.Is_initialized():
                        MPI.Init_thread(MPI.THREAD_MULTIPLE)
                    comm, mpi_ok = MPI.COMM_WORLD, True
                    trap = worlds.singleton_trap(self.world, comm.Get_size())
                    if trap:
                        raise plan.LaunchError(trap)
                except ImportError:
                    mpi_ok = False
        elif (self.world.launcher == "slurm" and self.world.size > 1 and self.world.rank == 0
              and importlib.util.find_spec("mpi4py") is not None):
            log.warning("%s", worlds.singleton_trap(self.world, 1))
        self.met_over_mpi = mpi_ok
        rendezvous = plan.plan_rendezvous(self.world, self.args.address, mpi_ok, mismatch)
        if rendezvous.mode == "local":
            return self.meet_locally()
        secret = cluster_secret(self.world, rendezvous, comm)
        if rendezvous.mode == "single":
            ip = own_ip(self.args.interface)
            return None, 0, ip, secret
        if rendezvous.mode == "address":
            seed_ip = rendezvous.address.rsplit(":", 1)[0].strip("[]")
            ip = own_ip(self.args.interface, seed_ip)
            return rendezvous.address, free_port(ip), ip, secret
        if rendezvous.mode == "mpi":
            ip = own_ip(self.args.interface)
            port = free_port(ip)
            seed = comm.bcast(join_address(ip, port) if self.world.rank == 0 else None, root=0)
            return (None if self.world.rank == 0 else seed), port, ip, secret
        seed_ip = host_address(rendezvous.seed_host)
        ip = own_ip(self.args.interface, seed_ip)
        if self.world.rank == 0:
            port = next((p for p in rendezvous.seed_ports if port_free(ip, p)), None)
            if port is None:
                raise plan.LaunchError(
                    f"every seed port derived from the job ({', '.join(map(str, rendezvous.seed_ports))}) "
                    f"is taken on {ip}: pass --address, or launch under MPI")
            return None, port, ip, secret
        seeds = ",".join(join_address(seed_ip, p) for p in rendezvous.seed_ports)
        return seeds, free_port(ip), ip, secret

    def meet_locally(self):
        """Every rank on this host, no MPI to meet over: rank 0 writes its address and a fresh
        secret to a 0600 file in the user's 0700 zray directory, named after the job and the
        launcher process that started the ranks (pid and start time: never a stale file of an
        earlier job); the others wait for it (the formation timeout). Rank 0 removes it once
        every rank joined, or when it stops."""
        from ..node import session
        from ..node.processes import process_start_time
        parent = os.getppid()
        key = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{self.world.job_key}-{parent}-"
                                              f"{process_start_time(parent)}")
        path = os.path.join(session.user_root(), f"launch-{key}.json")
        ip = own_ip(self.args.interface)
        port = free_port(ip)
        if self.world.rank == 0:
            secret = os.environ.get("ZRAY_CLUSTER_SECRET") or _new_secret()
            tmp = f"{path}.{os.getpid()}"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump({"address": join_address(ip, port), "secret": secret}, f)
            os.replace(tmp, path)
            self.rendezvous_file = path
            return None, port, ip, secret
        deadline = time.monotonic() + self.args.formation_timeout
        while True:
            try:
                with open(path) as f:
                    seed = json.load(f)
                return seed["address"], port, ip, seed["secret"]
            except (OSError, ValueError, KeyError):
                pass
            if time.monotonic() >= deadline:
                raise plan.LaunchError(
                    f"rank 0 of this job did not announce its node within "
                    f"{self.args.formation_timeout:.0f} s (no {path}); the ranks of one launch "
                    f"on one host meet there when MPI cannot be used")
            time.sleep(0.02)

    def forget_rendezvous_file(self):
        if self.rendezvous_file:
            try:
                os.unlink(self.rendezvous_file)
            except OSError:
                pass
            self.rendezvous_file = None

    def start_node(self, join, port, ip, secret):
        from ..node import local_node, session
        from ..node.bootstrap import NodeSpec, start_node
        runs_app = self.args.spmd or self.world.rank == 0
        self.session_dir = session.create_session_dir()
        store = self.args.object_store_memory or int(min(0.3 * self.share.memory_bytes, 2 << 30)) // 4096 * 4096
        resources = dict(self.share.resources)
        spec = NodeSpec(session_dir=self.session_dir, num_cpus=self.share.cpus,
                        num_gpus=len(self.share.gpu_ids), resources=resources,
                        object_store_memory=max(store, 64 << 20), node_ip=ip, port=port,
                        driver_pid=os.getpid(),      # the node ends with this rank, kill -9 too
                        join=join, secret_file=write_secret(self.session_dir, secret),
                        node_file=local_node.node_file_for(self.session_dir),
                        # The app's first task runs on a rank that runs the app: its zygote
                        # imports what a worker needs at once. Other ranks start lighter.
                        warmup="idle" if runs_app else "lazy")
        log.info("rank %d on %s: node at %s port %d with %d CPUs, %.1f GiB (of %s)%s",
                 self.world.rank, self.world.node_name, ip, port, self.share.cpus,
                 self.share.memory_bytes / (1 << 30), self.alloc.describe(),
                 f", joining {join}" if join else "")
        # A joining node waits for a member before it says ready; the seed may start later
        # than this rank, so allow it the formation timeout.
        os.environ.setdefault("ZRAY_JOIN_TIMEOUT_S", str(self.args.formation_timeout))
        # Forked from this process (no second interpreter start) unless MPI is initialized
        # here: a process must not fork after MPI_Init. A rank that runs the app imports the
        # driver API first, which its node's zygote then has too (its workers need it); else
        # in a thread while its node starts.
        fork = not _mpi_initialized()
        if fork and runs_app:
            from ..core.worker_main import import_worker_modules
            import_worker_modules()
        self.node = start_node(spec, timeout=self.args.formation_timeout + 5,
                               after_spawn=lambda: self._spawned(runs_app and not fork),
                               fork=fork)
        self.node_ready = time.monotonic()
        self.phases.append(("node serving", self.node_ready))
        self.node_info = local_node.find_node(spec.node_file)
        self.node_client = local_node.NodeClient(self.node_info)   # the watch's, kept open

    def _spawned(self, preload_api):
        self.phases.append(("node spawned", time.monotonic()))
        if preload_api:
            # Once the daemon is spawned, not before: this thread holds the GIL for much of
            # its ~0.1 CPU-s and would delay the spawn.
            self.api_import = _import_api_in_background()

    def log_phases(self):
        """The start-up's phases (rank 0, once its cluster formed): where a slow start went."""
        from ..node.processes import process_cpu_seconds
        log.info("%s", plan.phase_summary(self.phases, sum(os.times()[:2]),
                                          process_cpu_seconds(self.node.pid)))

    def cluster_nodes(self):
        from ..transport import wire
        return self.node_client.query(wire.CLUSTER_INFO, timeout=5.0)["nodes"]

    def wait_formation(self):
        expected = set(range(self.world.size))
        deadline = time.monotonic() + self.args.formation_timeout
        started = time.monotonic()
        while True:
            joined = plan.ranks_of(self.cluster_nodes())
            if expected <= set(joined):
                self.phases.append((f"all {len(expected)} nodes joined", time.monotonic()))
                self.forget_rendezvous_file()
                return
            if not self.node.alive():
                raise plan.LaunchError("this rank's node daemon died during formation")
            if time.monotonic() >= deadline:
                raise plan.LaunchError(plan.formation_message(
                    expected, joined, time.monotonic() - started, plan.hosts_by_rank(self.world)))
            time.sleep(0.05)

    def watch(self, on_loss):
        """A thread (on the ranks that run the app; a serving rank's loop does the same,
        _serve): call on_loss(text) when this rank's node dies, or a node of the job goes
        while the job runs."""
        def loop():
            while not self.stopping.wait(WATCH_INTERVAL_S):
                if not self.node.alive():
                    on_loss("this rank's node daemon died")
                    return
                try:
                    nodes = self.cluster_nodes()
                except Exception as exc:   # the node stopped answering: it is going away
                    if self.stopping.is_set():
                        return
                    log.debug("cluster info failed: %r", exc)
                    continue
                if _driver_left(nodes):     # the job is ending: every rank now leaves
                    return
                text = self.lost(nodes)
                if text:
                    on_loss(text)
                    return
        thread = threading.Thread(target=loop, name="zray-launch-watch", daemon=True)
        thread.start()
        return thread

    def lost(self, nodes):
        """The first node of the job gone against the rules, in words; None. A rank's node
        leaves gracefully whenever its launcher ends, killed or not (it watches the launcher's
        pid), so leaving is normal only for rank 0's node (the driver ended) or in --spmd mode
        (a rank finished its app)."""
        for node in nodes:
            state = node.get("State")
            if state not in ("DEAD", "LEFT"):
                continue
            for rank in sorted(plan.ranks_of([dict(node, Alive=True)])):
                if state == "DEAD" or not (rank == 0 or self.args.spmd):
                    return (f"rank {rank}'s node {'died' if state == 'DEAD' else 'left'} "
                            f"({node.get('NodeManagerAddress')})")
        return None

    def stop(self):
        self.stopping.set()
        self.forget_rendezvous_file()
        if self.node_client is not None:
            self.node_client.close()
        if self.node is not None and self.node.alive():
            try:
                self.node.proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
            self.node.stop(grace=STOP_GRACE_S)
        if self.session_dir:
            from ..node import session
            session.remove_session_dir(self.session_dir)


def _process_began(now):
    """When this process started, on the monotonic clock (its start time in /proc is in clock
    ticks since boot); `now` when unknown."""
    from ..node.processes import process_start_time
    ticks = process_start_time(os.getpid())
    if ticks is None:
        return now
    try:
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK")
    except (AttributeError, OSError, ValueError):
        return now
    return now - max(0.0, age - (time.monotonic() - now))


def _mpi_initialized():
    mpi = sys.modules.get("mpi4py.MPI")
    if mpi is None:
        return False
    try:
        return bool(mpi.Is_initialized())
    except Exception:      # cannot tell: do not fork
        return True


def _import_api_in_background():
    """The ranks that run app.py import zray's driver API (which the app's `zray.init()` needs)
    while their node daemon starts, instead of after the cluster formed: the import and the
    daemon's start are both on the path to the app's first result."""
    def run():
        try:
            import zray.api  # noqa: F401
        except Exception:     # the app's own import reports it
            log.debug("preloading zray.api failed", exc_info=True)
    thread = threading.Thread(target=run, name="zray-launch-preload", daemon=True)
    thread.start()
    return thread


def mpi_mismatch(world):
    """Why mpi4py cannot join this launcher's MPI job, or None when it can (or cannot say).
    mpi4py built for MPICH aborts the process in MPI_Init under Open MPI's mpirun (and the
    other way round), so the library is asked for its vendor before any MPI_Init."""
    if world.launcher not in ("openmpi", "mpich"):
        return None
    if importlib.util.find_spec("mpi4py") is None:
        return "mpi4py is not installed"
    try:
        import mpi4py
        mpi4py.rc.initialize = False     # MPI_Init below, once the library is known to fit
        mpi4py.rc.finalize = True
        from mpi4py import MPI
    except ImportError as exc:
        return f"mpi4py cannot be imported ({exc})"
    if MPI.Is_initialized():
        return None
    library = MPI.Get_library_version()
    is_open_mpi = "Open MPI" in library
    if (world.launcher == "openmpi") == is_open_mpi:
        return None
    vendor = " ".join(library.split()[:3]) if library.strip() else "an unknown MPI"
    return (f"mpi4py here is built for {vendor}, not for the {'Open MPI' if world.launcher == 'openmpi' else 'MPICH'} "
            f"that launched this job")


def _run_app(app, argv):
    """app.py as __main__ in this process; its exit code."""
    import runpy
    sys.argv = [app, *argv]
    sys.path.insert(0, os.path.dirname(os.path.abspath(app)))
    try:
        runpy.run_path(app, run_name="__main__")
        return 0
    except SystemExit as exc:
        code = exc.code
        if code is None:
            return 0
        if isinstance(code, int):
            return code
        print(code, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BaseException:
        import traceback
        traceback.print_exc()
        return 1


def main(argv=None):
    entered = time.monotonic()
    args = parse_args(sys.argv[1:] if argv is None else argv)
    world = worlds.detect()
    alloc = allocation.detect()
    if world.size > 1 and not args.no_prefix:
        prefix = f"[rank {world.rank} {world.node_name}] "
        sys.stdout = PrefixedStream(sys.stdout, prefix)
        sys.stderr = PrefixedStream(sys.stderr, prefix)
    # Times to the millisecond: where a slow start goes shows in every rank's log.
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, datefmt="%H:%M:%S",
                        format="%(asctime)s.%(msecs)03d %(name)s: %(levelname)s: %(message)s")
    launch = Launch(args, world, alloc, entered)
    loss = {"text": None}
    main_thread_done = threading.Event()

    def on_signal(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    try:
        join, port, ip, secret = launch.meet()
        launch.phases.append(("rendezvous", time.monotonic()))
        launch.start_node(join, port, ip, secret)
        if world.rank == 0 and world.size > 1:
            launch.wait_formation()
        if world.rank == 0:
            launch.log_phases()
        # zray.init() in the app attaches to this rank's node (local_node.find_node).
        mesh = launch.node_info.get("mesh_address")
        os.environ["ZRAY_ADDRESS"] = mesh[len("tcp://"):] if mesh else launch.node_info["node_file"]

        def on_loss(text):
            if args.tolerate_node_loss and "this rank" not in text:
                log.warning("%s; going on (--tolerate-node-loss)", text)
                return
            loss["text"] = text
            if not main_thread_done.is_set():
                os.kill(os.getpid(), signal.SIGUSR1)

        def on_usr1(signum, frame):
            raise SystemExit(1)

        signal.signal(signal.SIGUSR1, on_usr1)
        if args.spmd or world.rank == 0:
            launch.watch(on_loss)
        if args.spmd:
            # The default collective group spans the ranks (formed on its first use).
            os.environ["ZRAY_SPMD_WORLD"] = (f"{world.rank} {world.size} "
                                             f"{'mpi' if launch.met_over_mpi else 'cpu'}")
        if args.spmd or world.rank == 0:
            if launch.api_import is not None:
                # Finished before the app imports zray itself: two threads importing one
                # package's modules in different orders can deadlock on the import locks.
                launch.api_import.join(timeout=60)
            code = _run_app(args.app, args.args)
        else:
            code = _serve(launch, on_loss)
        main_thread_done.set()
        if loss["text"]:
            log.error("the job ends: %s", loss["text"])
            code = code or 1
        return code
    except plan.LaunchError as exc:
        log.error("%s", exc)
        return 2
    except SystemExit as exc:
        if loss["text"]:
            log.error("the job ends: %s", loss["text"])
        return exc.code if isinstance(exc.code, int) else 1
    finally:
        main_thread_done.set()
        launch.stop()


def _serve(launch, on_loss):
    """A serving rank: run until the driver's node leaves (0) or the job is lost (on_loss, as
    the watcher of the ranks that run the app; one loop, so one query of the node per turn)."""
    watching = True
    while True:
        if not launch.node.alive():
            on_loss("this rank's node daemon died")
            return 1
        try:
            nodes = launch.cluster_nodes()
        except Exception as exc:     # the node stopped answering: it is going away
            log.debug("cluster info failed: %r", exc)
            time.sleep(WATCH_INTERVAL_S)
            continue
        if _driver_left(nodes):
            return 0
        if watching:
            text = launch.lost(nodes)
            if text:
                on_loss(text)         # raises SystemExit here unless the loss is tolerated
                watching = False
        time.sleep(WATCH_INTERVAL_S)


def _driver_left(nodes):
    """Rank 0's node left the mesh: the driver ended and the job with it."""
    return any(node.get("State") == "LEFT" and 0 in plan.ranks_of([dict(node, Alive=True)])
               for node in nodes)
