"""runtime_env: env_vars, working_dir, py_modules and pip for init(), tasks and actors.

Unit tests of the checking, merging and packaging first (no processes), then a real cluster:
workers started per environment, archives shipped through the object store and unpacked once
per node, pip environments built from the package registry and cached per requirement set."""
import os
import io
import stat
import zipfile

import pytest

import zray
from zray.exceptions import RuntimeEnvSetupError
from zray.runtime_env import RuntimeEnv, spec
from zray.runtime_env.packaging import archive, excluded


# -- checking and merging (no cluster) ---------------------------------------------------------
@pytest.mark.parametrize("field", ["conda", "container", "image_uri"])
def test_unsupported_fields_are_refused_by_name(field):
    with pytest.raises(ValueError, match=f"runtime_env field '{field}' is not supported by zray"):
        spec.check({field: "anything"})
    with pytest.raises(RuntimeEnvSetupError):       # what Ray raises for them
        spec.check({field: "anything"})


@pytest.mark.parametrize("env, error, text", [
    ({"no_such_field": 1}, ValueError, "unknown runtime_env field 'no_such_field'"),
    ("env_vars=A", TypeError, "must be a dict"),
    ({"env_vars": {"A": 1}}, TypeError, "must map str to str"),
    ({"env_vars": {"A=B": "1"}}, ValueError, "not a valid variable name"),
    ({"env_vars": ["A"]}, TypeError, "dict of str to str"),
    ({"working_dir": "/no/such/dir"}, ValueError, "does not exist"),
    ({"working_dir": "s3://bucket/pkg.zip"}, ValueError, "remote URIs"),
    ({"working_dir": 3}, TypeError, "must be a local path"),
    ({"py_modules": "/tmp"}, TypeError, "must be a list"),
    ({"env_vars": {}, "excludes": ["*.log"]}, ValueError, "neither is given"),
    ({"pip": [""]}, TypeError, "requirement strings"),
    ({"pip": {"packages": ["x"], "index": "y"}}, ValueError, "unknown keys"),
    ({"pip": 5}, TypeError, "list of requirements"),
    ({"config": {"setup_timeout_seconds": 0}}, ValueError, "setup_timeout_seconds"),
    ({"config": {"retries": 2}}, ValueError, "unknown keys"),
])
def test_bad_runtime_envs_raise_clear_errors(env, error, text):
    with pytest.raises(error, match=text):
        spec.check(env)


def test_check_normalizes_pip_forms(tmp_path):
    req = tmp_path / "requirements.txt"
    req.write_text("# pinned\ntabulate==0.8.10  # small\n\nsix\n")
    assert spec.check({"pip": ["a", " b "]}) == {"pip": {"packages": ["a", "b"],
                                                         "pip_check": False}}
    assert spec.check({"pip": str(req)})["pip"]["packages"] == ["tabulate==0.8.10", "six"]
    assert spec.check({"pip": {"packages": ["a"], "pip_check": True}})["pip"]["pip_check"]
    assert spec.check({}) is None and spec.check(None) is None
    assert spec.check({"env_vars": None}) is None


def test_runtime_env_class_checks_when_made():
    from zray.runtime_env import RuntimeEnvConfig
    assert RuntimeEnv(env_vars={"A": "1"}) == {"env_vars": {"A": "1"}}
    with pytest.raises(ValueError, match="conda"):
        RuntimeEnv(conda={"dependencies": []})
    config = RuntimeEnvConfig(setup_timeout_seconds=30)
    assert spec.check({"config": config})["config"]["setup_timeout_seconds"] == 30
    with pytest.raises(ValueError, match="setup_timeout_seconds"):
        RuntimeEnvConfig(setup_timeout_seconds=-5)


def test_merge_overrides_fields_and_merges_env_vars():
    parent = {"env_vars": {"A": "1", "B": "1"}, "pip": {"packages": ["x"]}, "working_dir": "p"}
    child = {"env_vars": {"B": "2"}, "pip": {"packages": ["y"]}}
    assert spec.merge(parent, child) == {"env_vars": {"A": "1", "B": "2"},
                                         "pip": {"packages": ["y"]}, "working_dir": "p"}
    assert spec.merge(None, child) == child and spec.merge(parent, None) == parent
    assert spec.dumps(spec.merge(None, None)) == ""
    assert spec.dumps({"b": 1, "a": 2}) == spec.dumps({"a": 2, "b": 1})


def test_archives_are_named_by_content_and_honour_excludes(tmp_path):
    for name in ("one", "two"):
        d = tmp_path / name
        (d / "pkg").mkdir(parents=True)
        (d / "pkg" / "mod.py").write_text("X = 1\n")
        (d / "run.sh").write_text("#!/bin/sh\n")
        os.chmod(d / "run.sh", 0o755)
        (d / "big.log").write_text("log")
        (d / "data").mkdir()
        (d / "data" / "x.csv").write_text("1,2")
    os.utime(tmp_path / "two" / "pkg" / "mod.py", (1, 1))     # mtimes do not matter
    data1, hash1 = archive(str(tmp_path / "one"), ["*.log", "data/"])
    _, hash2 = archive(str(tmp_path / "two"), ["*.log", "data/"])
    _, hash3 = archive(str(tmp_path / "two"))
    assert hash1 == hash2 != hash3
    with zipfile.ZipFile(io.BytesIO(data1)) as zf:
        assert sorted(zf.namelist()) == ["pkg/mod.py", "run.sh"]
        assert (zf.getinfo("run.sh").external_attr >> 16) & stat.S_IXUSR
    assert excluded("a/b/c.txt", ["b/"]) and excluded("a/b.txt", ["*.txt"])
    assert excluded("data/x.csv", ["data/*.csv"]) and not excluded("data/x.csv", ["*.txt"])
    assert excluded("build/x.o", ["/build"]) and not excluded("src/build/x.o", ["/build"])
    assert excluded("src/build/x.o", ["build/"])


# -- the node's worker pools (the scheduler as a state machine) --------------------------------
def _env_task(n, env=""):
    from zray.scheduling.local_scheduler import Task
    from zray.scheduling.resources import to_units
    from zray.scheduling.task_spec import TaskSpec
    extra = {"runtime_env": env} if env else None
    return Task(TaskSpec(bytes([n]) * 12, "j", f"t{n}", b"f", [], [], 1, to_units({"CPU": 1}),
                         3, False, "owner", extra=extra), [])


def test_a_task_runs_only_in_a_worker_of_its_environment():
    from zray.scheduling.local_scheduler import Dispatch, LocalScheduler, StartWorker
    from zray.scheduling.resources import to_units
    s = LocalScheduler(to_units({"CPU": 2}))
    s.handle_worker_started("plain", "j", "addr-plain", 1)          # idle, no environment
    env = spec.dumps({"env_vars": {"A": "1"}})
    assert s.handle_task_submitted(_env_task(1, env)) == [StartWorker("j", env)]
    (dispatch,) = s.handle_worker_started("w-env", "j", "addr-env", 2, env)
    assert isinstance(dispatch, Dispatch) and dispatch.worker.worker_id == "w-env"
    (plain,) = s.handle_task_submitted(_env_task(2))
    assert isinstance(plain, Dispatch) and plain.worker.worker_id == "plain"


def test_at_the_worker_cap_an_idle_worker_of_another_environment_gives_way():
    from zray.scheduling.local_scheduler import KillWorker, LocalScheduler, StartWorker
    from zray.scheduling.resources import to_units
    s = LocalScheduler(to_units({"CPU": 2}), max_workers=1)
    s.handle_worker_started("old", "j", "addr-old", 1, spec.dumps({"env_vars": {"OLD": "1"}}))
    env = spec.dumps({"env_vars": {"NEW": "1"}})
    actions = s.handle_task_submitted(_env_task(1, env))
    assert [type(a) for a in actions] == [KillWorker, StartWorker]
    assert actions[0].worker.worker_id == "old" and actions[1] == StartWorker("j", env)
    assert s.handle_worker_died("old") == []         # a retired idle worker fails nothing


# -- on a cluster ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cluster():
    if zray.is_initialized():
        zray.shutdown()
    zray.init(num_cpus=2, runtime_env={"env_vars": {"JOB_VAR": "job"}})
    yield
    zray.shutdown()


@zray.remote
def getenv(*names):
    return [os.environ.get(n) for n in names]


@zray.remote
def where():
    return os.getcwd(), os.getpid()


@zray.remote
def nested_getenv(name):
    return zray.get(getenv.remote(name))[0]


@zray.remote
class EnvActor:
    def env(self, name):
        return os.environ.get(name)

    def read(self, path):
        with open(path) as f:
            return f.read()


@zray.remote
def env_string():
    return zray.get_runtime_context().get_runtime_env_string()


def test_runtime_context_shows_the_environment(cluster):
    import json
    assert json.loads(zray.get_runtime_context().get_runtime_env_string()) == {
        "env_vars": {"JOB_VAR": "job"}}
    assert zray.get_runtime_context().runtime_env == {"env_vars": {"JOB_VAR": "job"}}
    inside = json.loads(zray.get(env_string.options(
        runtime_env={"env_vars": {"T": "1"}}).remote()))
    assert inside == {"env_vars": {"JOB_VAR": "job", "T": "1"}}


def test_job_env_vars_reach_tasks_and_actors(cluster):
    assert zray.get(getenv.remote("JOB_VAR")) == ["job"]
    actor = EnvActor.remote()
    assert zray.get(actor.env.remote("JOB_VAR")) == "job"
    assert "JOB_VAR" not in os.environ        # the driver itself is not changed


def test_task_env_vars_merge_with_the_jobs_and_are_inherited(cluster):
    with_b = getenv.options(runtime_env={"env_vars": {"B": "task", "JOB_VAR": "over"}})
    assert zray.get(with_b.remote("JOB_VAR", "B")) == ["over", "task"]
    # A worker runs only tasks of its own environment: the next plain task does not see B.
    assert zray.get([getenv.remote("B") for _ in range(4)]) == [[None]] * 4
    # A nested task inherits the environment of the task that submitted it.
    nested = nested_getenv.options(runtime_env={"env_vars": {"C": "parent"}})
    assert zray.get(nested.remote("C")) == "parent"
    actor = EnvActor.options(runtime_env={"env_vars": {"D": "actor"}}).remote()
    assert zray.get([actor.env.remote("D"), actor.env.remote("JOB_VAR")]) == ["actor", "job"]


@pytest.fixture
def project(tmp_path):
    wd = tmp_path / "project"
    (wd / "data").mkdir(parents=True)
    (wd / "config.txt").write_text("from the working dir")
    (wd / "helper_in_wd.py").write_text("def answer():\n    return 42\n")
    (wd / "data" / "huge.bin").write_text("left behind")
    (wd / "notes.log").write_text("left behind too")
    return wd


@zray.remote
def use_working_dir():
    import helper_in_wd
    with open("config.txt") as f:
        text = f.read()
    return (text, helper_in_wd.answer(), os.path.exists("data"), os.path.exists("notes.log"),
            os.getcwd())


def test_working_dir_is_shipped_and_unpacked_once_per_node(cluster, project):
    env = {"working_dir": str(project), "excludes": ["data/", "*.log"]}
    text, answer, has_data, has_log, cwd = zray.get(
        use_working_dir.options(runtime_env=env).remote())
    assert (text, answer, has_data, has_log) == ("from the working dir", 42, False, False)
    assert os.path.dirname(cwd).endswith(os.path.join("runtime_resources", "working_dir"))
    # Another environment with the same directory: another worker, the same unpacked copy.
    env2 = dict(env, env_vars={"OTHER": "1"})
    cwd2, pid2 = zray.get(where.options(runtime_env=env2).remote())
    assert cwd2 == cwd
    # The actor's constructor and methods run there too.
    actor = EnvActor.options(runtime_env=env).remote()
    assert zray.get(actor.read.remote("config.txt")) == "from the working dir"
    # A changed directory is a new package.
    (project / "config.txt").write_text("changed")
    text, *_rest, cwd3 = zray.get(use_working_dir.options(
        runtime_env={"working_dir": str(project), "excludes": ["data/"]}).remote())
    assert text == "changed" and cwd3 != cwd


def test_py_modules_dirs_and_files(cluster, tmp_path):
    pkg = tmp_path / "shipped_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("NAME = 'package'\n")
    single = tmp_path / "shipped_single.py"
    single.write_text("NAME = 'single file'\n")

    @zray.remote
    def names():
        import shipped_pkg
        import shipped_single
        return shipped_pkg.NAME, shipped_single.NAME, os.getcwd()

    env = {"py_modules": [str(pkg), str(single)]}
    got = zray.get(names.options(runtime_env=env).remote())
    assert got[:2] == ("package", "single file")
    assert "runtime_resources" not in got[2]      # no working_dir: the cwd is left alone


def test_bad_runtime_env_fails_at_the_call_and_the_cluster_goes_on(cluster):
    with pytest.raises(ValueError, match="'conda' is not supported"):
        getenv.options(runtime_env={"conda": "env"}).remote("A")
    with pytest.raises(ValueError, match="'container' is not supported"):
        EnvActor.options(runtime_env={"container": {"image": "x"}}).remote()
    with pytest.raises(ValueError, match="unknown runtime_env field"):
        getenv.options(runtime_env={"workdir": "."}).remote("A")
    assert zray.get(getenv.remote("JOB_VAR")) == ["job"]


@zray.remote
def tabulate_version():
    import tabulate
    return tabulate.__version__, tabulate.__file__


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_pip_builds_one_cached_environment_per_requirement_set(cluster):
    # tabulate: small, pure Python, not among zray's dependencies (two versions from the
    # package registry, each in its own environment).
    old = tabulate_version.options(runtime_env={"pip": ["tabulate==0.8.10"]})
    new = tabulate_version.options(runtime_env={"pip": {"packages": ["tabulate==0.10.0"]}})
    (v_old, file_old), (v_new, file_new) = zray.get([old.remote(), new.remote()], timeout=300)
    assert (v_old, v_new) == ("0.8.10", "0.10.0")
    venv_old = file_old.split(os.sep + "lib" + os.sep)[0]
    assert os.sep + os.path.join("runtime_resources", "pip") + os.sep in file_old
    ready = os.path.join(venv_old, ".zray-ready")
    built_at = os.stat(ready).st_mtime_ns
    # The same requirements with other env_vars: another worker, the same environment.
    again = tabulate_version.options(runtime_env={"pip": ["tabulate==0.8.10"],
                                                  "env_vars": {"X": "1"}})
    assert zray.get(again.remote(), timeout=120) == (v_old, file_old)
    assert os.stat(ready).st_mtime_ns == built_at
    with pytest.raises(ModuleNotFoundError):     # not in the node's own environment
        zray.get(tabulate_version.remote())


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_setup_timeout_fails_and_a_later_worker_rebuilds_the_half_built_environment(cluster):
    pip = {"packages": ["tabulate==0.10.0"], "pip_check": True}     # a set of its own
    hurried = tabulate_version.options(runtime_env={
        "pip": pip, "config": {"setup_timeout_seconds": 1}})
    with pytest.raises(RuntimeEnvSetupError, match="timed out"):
        zray.get(hurried.remote(), timeout=120)
    patient = tabulate_version.options(runtime_env={"pip": pip})
    version, path = zray.get(patient.remote(), timeout=300)
    assert version == "0.10.0" and "runtime_resources" in path


@pytest.mark.timeout(300)
def test_pip_failure_is_a_runtime_env_setup_error(cluster):
    broken = getenv.options(runtime_env={"pip": ["this is not a requirement!"]})
    with pytest.raises(RuntimeEnvSetupError, match="pip install"):
        zray.get(broken.remote("A"), timeout=120)
    # The failed worker stays and fails its tasks fast; other environments are unaffected.
    with pytest.raises(RuntimeEnvSetupError):
        zray.get(broken.remote("A"), timeout=60)
    actor = EnvActor.options(runtime_env={"pip": ["this is not a requirement!"]}).remote()
    with pytest.raises(Exception, match="RuntimeEnvSetupError|runtime_env"):
        zray.get(actor.env.remote("A"), timeout=60)
    assert zray.get(getenv.remote("JOB_VAR")) == ["job"]


def test_bad_init_runtime_env_starts_nothing():
    if zray.is_initialized():
        zray.shutdown()
    with pytest.raises(ValueError, match="'conda' is not supported"):
        zray.init(num_cpus=1, runtime_env={"conda": "base"})
    assert not zray.is_initialized()


def test_unpacked_environments_are_removed_at_shutdown(tmp_path):
    if zray.is_initialized():
        zray.shutdown()
    (tmp_path / "f.txt").write_text("x")
    zray.init(num_cpus=1, runtime_env={"working_dir": str(tmp_path)})
    try:
        cwd, _ = zray.get(where.remote())
        assert os.path.isdir(cwd) and cwd != str(tmp_path)
    finally:
        zray.shutdown()
    assert not os.path.exists(cwd)


ACROSS_NODES = """
import os, zray
from zray.util.scheduling_strategies import NodeAffinitySchedulingStrategy as On
zray.init(address="auto", runtime_env={{"working_dir": {wd!r}, "env_vars": {{"V": "job"}}}})

@zray.remote
def look():
    with open("shipped.txt") as f:
        return f.read(), os.environ["V"], os.getcwd(), zray.get_runtime_context().get_node_id()

ids = {ids!r}
got = zray.get([look.options(scheduling_strategy=On(n, soft=False)).remote() for n in ids],
               timeout=120)
for text, var, cwd, node in got:
    print("SEEN", text, var, node, cwd)
zray.shutdown()
"""


@pytest.mark.timeout(300)
def test_working_dir_reaches_another_node_and_is_unpacked_there(tmp_path):
    from helpers.nodes import Cluster
    wd = tmp_path / "wd"
    wd.mkdir()
    (wd / "shipped.txt").write_text("across")
    if zray.is_initialized():
        zray.shutdown()
    mesh = Cluster(tmp_path, 0)
    try:
        mesh.add_node(num_cpus=1)
        mesh.add_node(num_cpus=1)
        mesh.wait_mesh_ready()
        ids = [mesh.node_id(0), mesh.node_id(1)]
        out = mesh.run_driver(0, ACROSS_NODES.format(wd=str(wd), ids=ids), timeout=240)
        seen = [line.split() for line in out.stdout.splitlines() if line.startswith("SEEN")]
        assert [s[1:4] for s in seen] == [["across", "job", ids[0]], ["across", "job", ids[1]]]
        cwd_a, cwd_b = seen[0][4], seen[1][4]
        # Each node unpacked the archive in its own session, under the same content hash.
        assert cwd_a != cwd_b and os.path.basename(cwd_a) == os.path.basename(cwd_b)
    finally:
        mesh.stop_all()
