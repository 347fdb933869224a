"""Message types on the wire.

ONLY APPEND TO THIS LIST. The numbers are part of the protocol: a node speaking version N
understands every message of versions <= N.

PROTOCOL_VERSION history:
  1 - one node: clients, tasks, objects, the store, logs.
  2 - ACTOR_CALL: ACTOR_TASK with the spec as a plain tuple (callers send ACTOR_CALL only).
  3 - the protocol version travels in every connection's routing id (a peer of another
      version is refused with PROTOCOL_MISMATCH, naming both); the cluster key-value store
      (KV_*); TaskSpec has a `kind` field; CANCEL_REQUEST (any holder of a ref cancels).

A message is a multipart ZeroMQ message:
  frame 0   header: pickle of (msg_type, payload) where payload is a tuple of plain values
  frame 1.. out-of-band buffers (serialized objects), never copied on the way
A reply to a request is (req_id, result, error): `error` is an exception instance or None.
The ROUTER that receives it sees one more frame in front: the sender's identity, which is
b"zray<PROTOCOL_VERSION> " followed by the sender's address.
"""

PROTOCOL_VERSION = 3

# -- clients and the node daemon ---------------------------------------------------------------
REGISTER_CLIENT = 1        # client -> daemon: (req_id, kind, address, pid, job_id, worker_id, driver_address[, namespace])
REGISTERED = 2             # daemon -> client: (req_id, node_info dict)
CLIENT_EXIT = 3            # client -> daemon: (address,)
SHUTDOWN_NODE = 4          # driver -> daemon: ()
CLUSTER_INFO = 5           # client -> daemon: (req_id,)
CLUSTER_INFO_REPLY = 6     # daemon -> client: (req_id, info dict)
LOG_LINES = 7              # worker -> driver: (stream, text)
WARNING = 8                # daemon -> owner: (text,)
CLIENT_DIED = 9            # daemon -> clients: (address,)

# -- functions ---------------------------------------------------------------------------------
EXPORT_FUNCTION = 10       # owner -> daemon: (function_id,) + frame: pickled function
FETCH_FUNCTION = 11        # worker -> daemon: (req_id, function_id)
FUNCTION = 12              # daemon -> worker: (req_id, function_id) + frame

# -- tasks -------------------------------------------------------------------------------------
SUBMIT_TASK = 20           # owner -> daemon: (spec,) + arg frames
EXECUTE_TASK = 21          # daemon -> worker: (spec, resource_ids) + arg frames
TASK_RESULT = 22           # worker -> owner: (task_id, attempt, results, retryable[, debugger_get]) + frames
TASK_FINISHED = 23         # worker -> daemon: (task_id[, attempt, error_type, error_message])
                           #   error_type: Ray's name (TASK_EXECUTION_EXCEPTION, ...) or None
TASK_FAILED = 24           # daemon -> owner: (task_id, attempt, reason, detail)
CANCEL_TASK = 25           # owner -> daemon, daemon -> worker: (task_id, force, recursive)
WORKER_BLOCKED = 26        # worker -> daemon: (blocked: bool)
GENERATOR_ITEM = 27        # worker -> owner: (task_id, attempt, index, result) + frames
CANCEL_REQUEST = 28        # a process holding a ref to a task -> the task's owner, which
                           #   decides: (task_id, force, recursive)

# -- objects -----------------------------------------------------------------------------------
OBJ_CREATE = 40            # client -> daemon: (req_id, object_id, size, owner)
OBJ_CREATED = 41           # daemon -> client: (req_id, offset | None, error | None)
OBJ_SEAL = 42              # client -> daemon: (object_id,)
OBJ_PIN = 43               # client -> daemon: (req_id, object_id[, location node_id])
                           #   with a location (the node holding the primary copy, as the
                           #   owner reports it) the daemon pulls the object from that node
                           #   when it has no copy; the reply waits for the copy
OBJ_PINNED = 44            # daemon -> client: (req_id, offset | None, size, error | None)
OBJ_UNPIN = 45             # client -> daemon: (object_ids,)
OBJ_FREE = 46              # owner -> daemon: (object_ids[, locations]) locations: node_id of
                           #   each object's primary copy (or None); the daemon frees its copy
                           #   and sends OBJ_FREE_COPIES to the location node
OBJ_STATUS_REQUEST = 47    # borrower -> owner: (object_id[, node where the borrower lost its copy])
OBJ_STATUS = 48            # owner -> borrower: (object_id, kind, node[, debugger_get]) + frames;
                           #   debugger_get: the value is a debugger `get` step's result, so
                           #   the borrower's zray.get of it pauses (zray/util/debug)
ADD_BORROWER = 49          # -> owner: (object_id, borrower_address, count)
REMOVE_BORROWER = 50       # -> owner: (object_id, borrower_address, count)
STORE_STATS = 51           # client -> daemon: (req_id,)
STORE_STATS_REPLY = 52     # daemon -> client: (req_id, stats dict)
CHECK_OWNER = 53           # borrower -> its daemon (-> the owner's node daemon): (owner, asker)
                           #   answered only when `owner` is no live process (dead, or never
                           #   was): CLIENT_DIED (owner,) to `asker`. Later deaths are told
                           #   to every client anyway (CLIENT_DIED)

# -- actors (protocol version 1 still: the first release has them) ------------------------------
REGISTER_ACTOR = 60        # owner -> daemon: (req_id, actor_id, name, namespace, detached,
                           #   get_if_exists, max_restarts, class_name, job_id, owner, meta)
ACTOR_REGISTERED = 61      # daemon -> owner: (req_id, (actor_id, owner, meta), error)
ACTOR_STARTED = 62         # actor worker -> daemon: (actor_id, ok, message) + [error layout]
ACTOR_STATE = 63           # daemon -> callers: (actor_id, state, address, message[, home[,
                           #   exited]]) + [error layout]; state "MOVED": subscribe again at
                           #   `home`; `exited`: DEAD because it exited by itself. Also actor
                           #   worker -> each caller, as it exits: (actor_id, "EXITED", None,
                           #   message), after its last reply to that caller
SUBSCRIBE_ACTOR = 64       # caller -> daemon: (actor_id,)
KILL_ACTOR = 65            # -> daemon: (actor_id, no_restart)
ACTOR_EXITING = 66         # actor worker -> daemon: (actor_id,)
GET_ACTOR = 67             # -> daemon: (req_id, name, namespace)
GET_ACTOR_REPLY = 68       # daemon -> caller: (req_id, (actor_id, owner, meta), error)
ACTOR_TASK = 69            # caller -> actor worker: (spec,) + arg frames
TERMINATE_ACTOR = 70       # daemon -> actor worker: () exit after the queued calls
ACTOR_OUT_OF_SCOPE = 71    # owner -> daemon: (actor_id,) no handle remains
LIST_ACTORS = 72           # -> daemon: (req_id,)
LIST_ACTORS_REPLY = 73     # daemon -> caller: (req_id, [info], None)
ACTOR_CALL = 74            # caller -> actor worker: (TaskSpec's fields in __slots__ order) + arg
                           #   frames. ACTOR_TASK without a class in the header: unpickling one
                           #   costs ~5 µs per message, on the critical path of every call.

# -- the mesh -------------------------------------------------------------------------------------
MESH_SWIM = 80             # daemon -> daemon (TCP, CURVE): (swim message tuple,)

# -- introspection (zray list) --------------------------------------------------------------------
LIST_TASKS = 90            # -> daemon: (req_id,)
LIST_TASKS_REPLY = 91      # daemon -> caller: (req_id, [info], None)
LIST_OBJECTS = 92          # -> daemon: (req_id,)
LIST_OBJECTS_REPLY = 93    # daemon -> caller: (req_id, [info], None)

# -- objects across nodes (daemon <-> daemon over the mesh; zray/store/transfer.py) -------------
OBJ_PULL_REQUEST = 100     # puller -> source: (pull_id, object_id) the source pins it
OBJ_PULL_REPLY = 101       # source -> puller: (pull_id, size | None, error | None[, data endpoint])
OBJ_CHUNK_REQUEST = 102    # puller -> source: (pull_id, offset, length) at most WINDOW outstanding
OBJ_CHUNK = 103            # source -> puller: (pull_id, offset, error | None) + [the bytes, sent
                           #   zero-copy from the source's region; absent with an error]
OBJ_PULL_END = 104         # puller -> source: (pull_id, kept) the source unpins; kept: the
                           #   puller now holds a copy (freed with the primary)
OBJ_FREE_COPIES = 105      # daemon -> daemon: (object_ids,) free your copy, and the copies you
                           #   served

# -- tasks and actors across nodes (120-139) ------------------------------------------------------
FORWARD_TASK = 120         # daemon -> daemon: (spec, hops, driver_address) + arg frames
FORWARD_DONE = 121         # daemon -> the daemon that forwarded the task: (task_id,)
PEER_CLIENT_GONE = 122     # daemon -> daemons: (address, kind, job_id) a driver or worker exited
NODE_DIED = 123            # daemon -> its clients: (node_id, mesh_address) a member is dead or left
ACTOR_HOSTED = 124         # hosting daemon -> actor's home: (actor_id, ok, message, worker_id,
                           #   address, pid) + [error layout]
ACTOR_HOST_DIED = 125      # hosting daemon -> actor's home: (actor_id, worker_id, detail)
KILL_REMOTE_WORKER = 126   # actor's home -> hosting daemon: (worker_id,)
NAME_CLAIM = 127           # daemon -> a name's decider: (request_id, key, entry)
NAME_CLAIM_REPLY = 128     # decider -> daemon: (request_id, ok, entry holding the name)
NAME_LOOKUP = 129          # daemon -> a name's decider: (request_id, key)
NAME_LOOKUP_REPLY = 130    # decider -> daemon: (request_id, found, entry | None)
NAME_REPLICA = 131         # daemon -> a name's replica: (key, entry)
NAME_RELEASE = 132         # daemon -> a name's decider and replicas: (key, actor_id)
ACTOR_ADOPT = 133          # home -> hosting daemon: (record fields,) + creation frames: the
                           #   hosting node becomes the home of a detached actor
ACTOR_ADOPTED = 134        # new home -> old home: (actor_id, new home address)
ACTOR_RECORD_REPLICA = 135 # home -> the record's keepers on the ring: (record fields,) + frames
ACTOR_RECORD_DROP = 136    # home -> keepers: (actor_id,) the actor is dead for good
ACTOR_FIND = 137           # caller -> its daemon -> the record's keeper: (actor_id, caller)
ACTOR_REHOMED = 138        # new home -> the actor's hosting daemon: (worker_id, new home)

# -- placement groups (140-159; zray/scheduling/placement_groups.py, zray/node/pg_service.py) -------
# pg_id is a hex string; bundles travel in fixed-point units (scheduling/resources.py).
PG_CREATE = 140            # client -> its daemon: (req_id, pg_id, bundles, strategy, name,
                           #   namespace, detached, job_id, creator_address); replied with
                           #   PG_REPLY (req_id, home address of the owner node, error)
PG_REPLY = 141             # daemon -> client: (req_id, result, error) for every PG_* request
PG_REMOVE = 142            # client -> the group's home: (req_id, pg_id); result None
PG_WAIT = 143              # client -> the group's home: (req_id, pg_id, timeout_s); result: whether
                           #   the group was created within timeout_s
PG_GET = 144               # client -> its daemon: (req_id, name, namespace); result: (pg_id,
                           #   bundles, strategy, home) of the named group, or ValueError
PG_TABLE = 145             # client -> a daemon: (req_id, pg_id | None); result: info dict of that
                           #   group, or {pg_id: info} of every group this node owns
PG_PREPARE = 146           # owner -> holder: (pg_id, round_id, [(index, units)], owner node_id)
                           #   set these bundles aside, all or none
PG_PREPARE_REPLY = 147     # holder -> owner: (pg_id, round_id, node_id, ok)
PG_COMMIT = 148            # owner -> holder: (pg_id, round_id, [index]) turn them into renamed
                           #   resources (CPU_group_<i>_<pg_id>, ...)
PG_RELEASE = 149           # owner -> holder: (pg_id, [index] | None) give them back (None: every
                           #   bundle of the group); tasks and actors using them are killed

# -- the cluster key-value store (160-169): rendezvous for collectives, launch, libraries ---------
# Keys live on the consistent-hash ring of the membership (the decider of a key and its
# replicas), like actor names. namespace and key are str; value is bytes.
KV_PUT = 160               # client -> its daemon: (req_id, namespace, key, value, overwrite);
                           #   result: True if written (False: the key existed, overwrite off)
KV_GET = 161               # client -> its daemon: (req_id, namespace, key); result: bytes | None
KV_DEL = 162               # client -> its daemon: (req_id, namespace, key); result: deleted?
KV_KEYS = 163              # client -> its daemon: (req_id, namespace, prefix); result: [key]
KV_REPLY = 164             # daemon -> client: (req_id, result, error) for every KV_* request
KV_FORWARD = 165           # daemon -> a key's decider: (request_id, op, namespace, key, value,
                           #   overwrite); replied with KV_FORWARD_REPLY
KV_FORWARD_REPLY = 166     # decider -> daemon: (request_id, result, error)
KV_REPLICA = 167           # decider -> the key's replicas: (namespace, key, value | None)

# -- protocol version (170-179): never renumber, every version must read these -----------------
# Every connection carries the sender's protocol version in its ZeroMQ routing id, sent in the
# ZMTP handshake when two processes first connect (and again on every reconnect):
#     b"zray<PROTOCOL_VERSION> " + the sender's address
# A receiver reads it off each message for free (the ROUTER hands it over anyway) and refuses
# a peer of another version, or one with no version (protocol 1-2): it drops the message and
# answers PROTOCOL_MISMATCH once per peer.
PROTOCOL_MISMATCH = 170    # refusing receiver -> sender: (sender's version | None, our version,
                           #   our zray version, text naming both). Read by every version; the
                           #   transport hands it to its process as (ProtocolMismatchError,)

# -- state, metrics, timeline (180-189; zray/state/, zray/node/state_service.py) ------------------
# A query is StateQuery.to_wire() (zray/state/query.py): a dict of plain values. Any node answers
# for the whole mesh: with scope "cluster" it asks every live member (scope "node") and merges.
STATE_QUERY = 180          # client -> any daemon, daemon -> peers: (req_id, query dict)
STATE_REPLY = 181          # daemon -> asker: (req_id, answer dict, error) answer: rows, total,
                           #   nodes answered, failed_nodes {node_id: why}, summary, files
WORKER_REPORT = 182        # worker/driver -> its daemon: (task events, metrics | None[, waiting,
                           #   resolved[, debugger ports | None]]) sent at most every 0.5 s: actor calls that run or
                           #   ended (zray/core/reporter.py), the process's metric values
                           #   (zray/util/metrics.py), tasks it owns that wait for arguments
                           #   and the ids of told ones that stopped waiting, and the
                           #   debugger ports of its paused threads when they changed
OBJECT_REFS_QUERY = 183    # daemon -> its client: (req_id, query dict): the object refs the
                           #   process holds (zray/state/object_refs.py), for list_objects
OBJECT_REFS_REPLY = 184    # client -> its daemon: (req_id, answer dict | None, error): rows and
                           #   total (or a summary) of the refs that match the query

# -- workers (190-199; zray/node/preload_service.py) ----------------------------------------------
WORKER_PRELOAD = 190       # client -> its daemon: (modules, "cluster"): the zygote imports them
                           #   (every later worker starts with them) and the daemon forwards
                           #   (modules, "node") to the other live members, and to later joiners

NAMES = {v: k for k, v in dict(globals()).items() if k.isupper() and isinstance(v, int) and k != "PROTOCOL_VERSION"}
