"""A real Slurm on this host for tests: Debian's slurmctld plus one slurmd per emulated node.

    with SlurmCluster(nodes=3, cpus=2) as slurm:
        slurm.run(["srun", "-N", "2", "-n", "2", "hostname"])

Every node shares this host's hostname and 127.0.0.1 (identity comes from SLURMD_NODENAME /
SLURM_NODEID); each slurmd has its own port. Daemons run in the foreground (-D) as children of
the fixture, configured by a slurm.conf in a temp dir passed through SLURM_CONF, so nothing of
the machine's own Slurm configuration is touched. Settings follow shared/HPC-NOTES.md.
"""
import os
import shutil
import socket
import subprocess
import tempfile
import time

PLUGIN_DIR = "/usr/lib/x86_64-linux-gnu/slurm-wlm"


def available():
    """Why a real Slurm cannot run here, or None when it can."""
    for tool in ("slurmctld", "slurmd", "srun", "sbatch", "scontrol", "sinfo"):
        if shutil.which(tool) is None and not os.path.exists(f"/usr/sbin/{tool}"):
            return f"{tool} is not installed (./setup.sh installs Slurm as root)"
    if os.geteuid() != 0:
        return "the Slurm fixture runs slurmd as root"
    return None


def _free_ports(n):
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class SlurmCluster:
    def __init__(self, nodes=3, cpus=2, memory_mb=2000, gpus=0, partition="debug", hosts=None):
        """`hosts` (tests/netns.py Hosts, one per node): each slurmd in its host's network
        namespace and a UTS namespace of its own (hostname nK, address of host K), slurmctld
        beside n1's; clients (srun, sbatch, ...) run from n1's network namespace. Without it,
        every node is this host at 127.0.0.1."""
        self.hosts = hosts
        self.nodes = [f"n{i + 1}" for i in range(nodes)]
        self.cpus = cpus
        self.memory_mb = memory_mb
        self.gpus = gpus
        self.partition = partition
        self.dir = tempfile.mkdtemp(prefix="zray-slurm-")
        self.conf = os.path.join(self.dir, "slurm.conf")
        self.procs = []
        self.env = dict(os.environ, SLURM_CONF=self.conf)

    # -- configuration ---------------------------------------------------------------------------
    def _write_config(self):
        ctld_port, *node_ports = _free_ports(1 + len(self.nodes))
        hostname = socket.gethostname()
        ctld_host = f"{hostname}(127.0.0.1)"
        if self.hosts:
            ctld_host = f"{self.nodes[0]}({self.hosts.addresses[0]})"
        auth = "none" if os.path.exists(f"{PLUGIN_DIR}/auth_none.so") else "munge"
        lines = [
            "ClusterName=zraytest", f"SlurmctldHost={ctld_host}",
            f"SlurmctldPort={ctld_port}", f"AuthType=auth/{auth}", f"CredType=cred/{auth}",
            "SlurmUser=root", "SlurmdUser=root", "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none", "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core", "SlurmdParameters=config_overrides",
            "MpiDefault=none", "ReturnToService=2", "KillWait=5",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            f"StateSaveLocation={self.dir}/state", f"SlurmdSpoolDir={self.dir}/spool/%n",
            f"SlurmctldPidFile={self.dir}/slurmctld.pid", f"SlurmdPidFile={self.dir}/slurmd-%n.pid",
            f"SlurmctldLogFile={self.dir}/slurmctld.log", f"SlurmdLogFile={self.dir}/slurmd-%n.log",
            "SchedulerParameters=sched_interval=1", "MessageTimeout=10",
            "InactiveLimit=0", "MinJobAge=300",
        ]
        if self.gpus:
            lines.append("GresTypes=gpu")
        for name, port in zip(self.nodes, node_ports):
            gres = f" Gres=gpu:{self.gpus}" if self.gpus else ""
            node_host, node_addr = hostname, "127.0.0.1"
            if self.hosts:
                node_host, node_addr = name, self.hosts.addresses[self.nodes.index(name)]
            lines.append(f"NodeName={name} NodeHostname={node_host} NodeAddr={node_addr} "
                         f"Port={port} CPUs={self.cpus} RealMemory={self.memory_mb}{gres}")
        lines.append(f"PartitionName={self.partition} Nodes=ALL Default=YES MaxTime=INFINITE "
                     f"State=UP OverSubscribe=YES")
        os.makedirs(f"{self.dir}/state")
        for name in self.nodes:
            os.makedirs(f"{self.dir}/spool/{name}")
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        if self.gpus:
            self._fake_gpus()
        if auth == "munge":
            self._start_munge()

    def _fake_gpus(self):
        files = []
        for i in range(self.gpus):
            path = f"{self.dir}/fakegpu{i}"
            subprocess.run(["mknod", path, "c", "1", "3"], check=True)
            files.append(path)
        with open(os.path.join(self.dir, "gres.conf"), "w") as f:
            f.write(f"Name=gpu File={self.dir}/fakegpu[0-{self.gpus - 1}]\n")

    def _start_munge(self):
        os.makedirs("/run/munge", exist_ok=True)
        subprocess.run(["chown", "munge:munge", "/run/munge"], check=False)
        subprocess.run(["runuser", "-u", "munge", "--", "/usr/sbin/munged"], check=False)

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self, timeout=30):
        self._write_config()
        log = open(os.path.join(self.dir, "daemons.out"), "ab")
        self.procs.append(subprocess.Popen(self._on_host(0, ["slurmctld", "-D", "-i"]),
                                           env=self.env, stdout=log, stderr=subprocess.STDOUT))
        for i, name in enumerate(self.nodes):
            self.procs.append(subprocess.Popen(self._on_host(i, ["slurmd", "-D", "-N", name]),
                                               env=self.env, stdout=log,
                                               stderr=subprocess.STDOUT))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for proc in self.procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"a Slurm daemon exited ({proc.args}): {self.logs()}")
            out = subprocess.run(self.client(["sinfo", "-h", "-N", "-o", "%N %t"]),
                                 env=self.env, capture_output=True, text=True)
            states = dict(line.split() for line in out.stdout.splitlines() if line.strip())
            if len(states) == len(self.nodes) and all(s == "idle" for s in states.values()):
                return self
            time.sleep(0.2)
        raise RuntimeError(f"Slurm nodes not idle after {timeout} s: {self.logs()}")

    def logs(self, tail=3000):
        text = []
        for name in sorted(os.listdir(self.dir)):
            if name.endswith(".log") or name.endswith(".out"):
                with open(os.path.join(self.dir, name), errors="replace") as f:
                    text.append(f"--- {name}\n{f.read()[-tail:]}")
        return "\n".join(text)

    def _on_host(self, index, argv):
        """A daemon's argv on node `index`'s host: its network namespace, its own hostname
        (`ip netns exec` would remount /sys, where slurmd 22.05 fails on /sys/fs/cgroup)."""
        if not self.hosts:
            return argv
        import shlex
        return ["nsenter", f"--net=/var/run/netns/{self.hosts.names[index]}", "unshare",
                "--uts", "sh", "-c",
                f"hostname {self.nodes[index]} && exec {shlex.join(argv)}"]

    def client(self, argv):
        """A client command's argv (from n1's network namespace when the nodes have hosts)."""
        if not self.hosts:
            return argv
        return ["nsenter", f"--net=/var/run/netns/{self.hosts.names[0]}", *argv]

    def run(self, argv, timeout=120, **kwargs):
        """Run a Slurm client command (srun, sbatch, ...) against this cluster."""
        env = dict(self.env, **kwargs.pop("env", {}))
        return subprocess.run(self.client(argv), env=env, timeout=timeout, capture_output=True,
                              text=True, **kwargs)

    def wait_job(self, job_id, timeout=120):
        """Wait until a batch job has ended; its final state (COMPLETED, FAILED, ...)."""
        deadline = time.monotonic() + timeout
        state = None
        while time.monotonic() < deadline:
            out = self.run(["scontrol", "show", "job", "-o", str(job_id)]).stdout
            fields = dict(f.split("=", 1) for f in out.split() if "=" in f)
            state = fields.get("JobState")
            if state and state not in ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING"):
                return state
            time.sleep(0.2)
        raise TimeoutError(f"job {job_id} still {state} after {timeout} s")

    def stop(self):
        subprocess.run(self.client(["scancel", "--quiet", "--full",
                                    f"--partition={self.partition}"]),
                       env=self.env, capture_output=True, timeout=30)
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        self.procs = []
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
