"""Message types on the wire.

ONLY APPEND TO THIS LIST. The numbers are part of the protocol: a node speaking version N
understands every message of versions <= N.

PROTOCOL_VERSION history:
  1 - one node: clients, tasks, objects, the store, logs.
  2 - ACTOR_CALL: ACTOR_TASK with the spec as a plain tuple (callers send ACTOR_CALL only).

A message is a multipart ZeroMQ message:
  frame 0   header: pickle of (msg_type, payload) where payload is a tuple of plain values
  frame 1.. out-of-band buffers (serialized objects), never copied on the way
A reply to a request is (req_id, result, error): `error` is an exception instance or None.
The ROUTER that receives it sees one more frame in front: the sender's identity, which is the
sender's address.
"""

PROTOCOL_VERSION = 2

# -- clients and the node daemon ---------------------------------------------------------------
REGISTER_CLIENT = 1        # client -> daemon: (req_id, kind, address, pid, job_id, worker_id, driver_address)
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
TASK_RESULT = 22           # worker -> owner: (task_id, attempt, results, retryable) + frames
TASK_FINISHED = 23         # worker -> daemon: (task_id,)
TASK_FAILED = 24           # daemon -> owner: (task_id, attempt, reason, detail)
CANCEL_TASK = 25           # owner -> daemon, daemon -> worker: (task_id, force, recursive)
WORKER_BLOCKED = 26        # worker -> daemon: (blocked: bool)
GENERATOR_ITEM = 27        # worker -> owner: (task_id, attempt, index, result) + frames

# -- objects -----------------------------------------------------------------------------------
OBJ_CREATE = 40            # client -> daemon: (req_id, object_id, size, owner)
OBJ_CREATED = 41           # daemon -> client: (req_id, offset | None, error | None)
OBJ_SEAL = 42              # client -> daemon: (object_id,)
OBJ_PIN = 43               # client -> daemon: (req_id, object_id)
OBJ_PINNED = 44            # daemon -> client: (req_id, offset | None, size, error | None)
OBJ_UNPIN = 45             # client -> daemon: (object_ids,)
OBJ_FREE = 46              # owner -> daemon: (object_ids,)
OBJ_STATUS_REQUEST = 47    # borrower -> owner: (object_id,)
OBJ_STATUS = 48            # owner -> borrower: (object_id, result) + frames
ADD_BORROWER = 49          # -> owner: (object_id, borrower_address, count)
REMOVE_BORROWER = 50       # -> owner: (object_id, borrower_address, count)
STORE_STATS = 51           # client -> daemon: (req_id,)
STORE_STATS_REPLY = 52     # daemon -> client: (req_id, stats dict)

# -- actors (protocol version 1 still: the first release has them) ------------------------------
REGISTER_ACTOR = 60        # owner -> daemon: (req_id, actor_id, name, namespace, detached,
                           #   get_if_exists, max_restarts, class_name, job_id, owner, meta)
ACTOR_REGISTERED = 61      # daemon -> owner: (req_id, (actor_id, owner, meta), error)
ACTOR_STARTED = 62         # actor worker -> daemon: (actor_id, ok, message) + [error layout]
ACTOR_STATE = 63           # daemon -> callers: (actor_id, state, address, message) + [error layout]
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

NAMES = {v: k for k, v in dict(globals()).items() if k.isupper() and isinstance(v, int) and k != "PROTOCOL_VERSION"}
