"""A job's settings every process of the job reads: its namespace and default actor lifetime.

The driver publishes them in the cluster key-value store when it connects (key: the job id, in
the KV namespace JOB_KV_NAMESPACE) and removes them at shutdown; a worker reads them the first
time its code needs one (ProcessContext.job_settings; a miss, before the driver has published, is
asked again next time), so tasks and actors run in their job's namespace wherever they run, and a
job that never asks costs its workers nothing. No wire message of its own: the KV store already
reaches every node.
"""
import logging
import pickle

log = logging.getLogger("zray.core")

JOB_KV_NAMESPACE = "zray.jobs"
LOAD_TIMEOUT_S = 30.0


def publish(rt, settings):
    rt.kv.put(rt.job_id, pickle.dumps(dict(settings)), namespace=JOB_KV_NAMESPACE)


def withdraw(rt):
    try:
        rt.kv.delete(rt.job_id, namespace=JOB_KV_NAMESPACE, timeout=5.0)
    except Exception as exc:     # the node may be gone already; the entry then goes with it
        log.debug("could not remove the settings of job %s: %r", rt.job_id, exc)


def load(rt):
    value = rt.kv.get(rt.job_id, namespace=JOB_KV_NAMESPACE, timeout=LOAD_TIMEOUT_S)
    return pickle.loads(value) if value else {}
