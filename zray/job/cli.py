"""`zray job submit|status|logs|stop|list|delete`, on zray.job_submission's client (so it works
against any node's dashboard, zray's or Ray's)."""
import argparse
import json
import signal
import sys
import time


def _parser():
    p = argparse.ArgumentParser(prog="zray job", description="submit and manage jobs")
    sub = p.add_subparsers(dest="verb", required=True)

    def verb(name, help_text):
        v = sub.add_parser(name, help=help_text)
        v.add_argument("--address", default=None,
                       help="the dashboard's URL (default: ZRAY_DASHBOARD_ADDRESS, else this "
                            "host's node)")
        return v
    s = verb("submit", "submit a job: zray job submit [options] -- COMMAND ...")
    s.add_argument("--working-dir", default=None, help="a local directory to run the job in "
                   "(uploaded to the cluster)")
    s.add_argument("--runtime-env", default=None, metavar="FILE.yaml",
                   help="runtime_env from a YAML file")
    s.add_argument("--runtime-env-json", default=None, help="runtime_env as JSON")
    s.add_argument("--submission-id", "--job-id", dest="submission_id", default=None)
    s.add_argument("--metadata-json", default=None)
    s.add_argument("--entrypoint-num-cpus", type=float, default=None)
    s.add_argument("--entrypoint-num-gpus", type=float, default=None)
    s.add_argument("--entrypoint-resources", default=None, help="JSON")
    s.add_argument("--no-wait", action="store_true", help="return once submitted")
    s.add_argument("entrypoint", nargs=argparse.REMAINDER)
    for name, text in (("status", "a job's status"), ("stop", "stop a job"),
                       ("delete", "delete a finished job"), ("logs", "a job's output")):
        v = verb(name, text)
        v.add_argument("job_id")
        if name == "logs":
            v.add_argument("--follow", "-f", action="store_true")
        if name == "stop":
            v.add_argument("--no-wait", action="store_true")
    lister = verb("list", "every job")
    lister.add_argument("--format", choices=["table", "json"], default="table")
    return p


def main(argv):
    args = _parser().parse_args(argv)
    from ..job_submission import JobSubmissionClient
    try:
        client = JobSubmissionClient(args.address)
        return _VERBS[args.verb](client, args)
    except (RuntimeError, ConnectionError, ValueError) as exc:
        print(f"zray job {args.verb}: {exc}", file=sys.stderr)
        return 1


def _json_arg(name, raw):
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"{name} is not valid JSON: {exc}") from None


def _yaml_file(name, path):
    try:
        import yaml
    except ImportError:
        raise ValueError(f"{name} needs PyYAML (pip install pyyaml); or use "
                         "--runtime-env-json") from None
    try:
        with open(path) as f:
            return yaml.safe_load(f)
    except OSError as exc:
        raise ValueError(f"{name}: cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{name}: {path} is not valid YAML: {exc}") from None


def _submit(client, args):
    entrypoint = args.entrypoint[1:] if args.entrypoint[:1] == ["--"] else args.entrypoint
    if not entrypoint:
        raise ValueError("no command given: zray job submit [options] -- COMMAND ...")
    import shlex
    if args.runtime_env and args.runtime_env_json:
        raise ValueError("give the runtime_env with --runtime-env or --runtime-env-json, "
                         "not both")
    runtime_env = (_yaml_file("--runtime-env", args.runtime_env) if args.runtime_env else
                   _json_arg("--runtime-env-json", args.runtime_env_json)) or {}
    if not isinstance(runtime_env, dict):
        raise ValueError(f"the runtime_env must be a mapping, got {type(runtime_env).__name__}")
    if args.working_dir:        # as Ray's: the flag over the runtime_env's own working_dir
        runtime_env["working_dir"] = args.working_dir
    sid = client.submit_job(
        entrypoint=" ".join(shlex.quote(a) for a in entrypoint) if len(entrypoint) > 1
        else entrypoint[0], runtime_env=runtime_env, submission_id=args.submission_id,
        metadata=_json_arg("--metadata-json", args.metadata_json),
        entrypoint_num_cpus=args.entrypoint_num_cpus, entrypoint_num_gpus=args.entrypoint_num_gpus,
        entrypoint_resources=_json_arg("--entrypoint-resources", args.entrypoint_resources))
    print(f"Job '{sid}' submitted successfully")
    if args.no_wait:
        print(f"Query its status with `zray job status {sid}`, its logs with "
              f"`zray job logs {sid} --follow`, stop it with `zray job stop {sid}`.")
        return 0

    # As `ray job submit`: Ctrl-C stops following the output, not the job.
    def stop_following(*_):
        print(f"\nzray job submit: no longer following; job '{sid}' keeps running (stop it "
              f"with `zray job stop {sid}`)", file=sys.stderr)
        raise SystemExit(130)
    signal.signal(signal.SIGINT, stop_following)
    for chunk in client.follow_logs(sid):
        sys.stdout.write(chunk)
        sys.stdout.flush()
    info = client.get_job_info(sid)
    print(f"Job '{sid}' {info.status}: {info.message}")
    return 1 if str(info.status) == "FAILED" else 0      # Ray's exit code: 1 only if FAILED


def _status(client, args):
    info = client.get_job_info(args.job_id)
    print(f"Job '{info.submission_id}': {info.status}\n  {info.message}")
    return 0


def _logs(client, args):
    if args.follow:
        for chunk in client.follow_logs(args.job_id):
            sys.stdout.write(chunk)
            sys.stdout.flush()
    else:
        sys.stdout.write(client.get_job_logs(args.job_id))
    return 0


def _stop(client, args):
    stopped = client.stop_job(args.job_id)
    if not stopped:
        print(f"Job '{args.job_id}' had already ended ({client.get_job_status(args.job_id)})")
        return 0
    if args.no_wait:
        print(f"Job '{args.job_id}' is stopping")
        return 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = client.get_job_status(args.job_id)
        if status.is_terminal():
            print(f"Job '{args.job_id}' {status}")
            return 0
        time.sleep(0.2)
    print(f"Job '{args.job_id}' did not stop within 60s", file=sys.stderr)
    return 1


def _delete(client, args):
    client.delete_job(args.job_id)
    print(f"Job '{args.job_id}' deleted")
    return 0


def _list(client, args):
    jobs = client.list_jobs()
    if args.format == "json":
        print(json.dumps([dict(vars(j), status=str(j.status)) for j in jobs], indent=2, default=str))
        return 0
    rows = [[j.submission_id or "-", j.job_id or "-", j.type, str(j.status),
             time.strftime("%H:%M:%S", time.localtime((j.start_time or 0) / 1000)),
             (j.entrypoint or "")[:60]] for j in jobs]
    head = ["SUBMISSION_ID", "JOB_ID", "TYPE", "STATUS", "START", "ENTRYPOINT"]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(head)]
    print("  ".join(h.ljust(w) for h, w in zip(head, widths)))
    for r in rows:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths)))
    print(f"({len(jobs)} jobs)")
    return 0


_VERBS = {"submit": _submit, "status": _status, "logs": _logs, "stop": _stop,
          "delete": _delete, "list": _list}
