/*
 * zray._mpi_hot -- the mpi backend's small allreduce, verification and data, in C.
 *
 * Why C: a zray allreduce on MPI is two round trips, a comparison of the ranks' call
 * shapes (a persistent 10-int64 MIN-allreduce) and then the data (an Iallreduce), each
 * polled with MPI_Test so that a dead peer or a timeout is an error, never a hang.
 * Through mpi4py each step costs Python objects and method calls (a Request per call, the
 * buffer parsed, a Python loop of Tests): at 4 KiB between two ranks that was 2.5x the
 * time of a plain MPI_Allreduce.  Here the whole call is one C function run without the
 * GIL; the Python side (backends/mpi.py) keeps everything else: building the rows,
 * waiting past the first few tens of microseconds (deadline, peers' liveness), errors.
 *
 * MPICH's ABI only (MPICH, Intel MPI, MVAPICH, Cray MPICH): every handle (MPI_Comm,
 * MPI_Request, MPI_Datatype, MPI_Op) is a C int.  No MPI header is needed: the caller
 * passes the addresses of MPI_Start, MPI_Test, MPI_Iallreduce, MPI_Allreduce_init and
 * MPI_Request_free from the libmpi that mpi4py loaded (ctypes), so this module never links
 * an MPI of its own.  Elsewhere the
 * backend keeps its Python path.
 *
 * A group keeps one persistent data request (MPI_Allreduce_init) for the call it last saw
 * repeated on every rank: a training loop reduces the same gradient buffer every step, and
 * MPICH's persistent schedule is faster than a new Iallreduce (4 KiB: 1.5-1.6x raw in all
 * instead of 1.7-1.9x).  Which request a call takes is decided by the verification itself:
 * each rank adds two flags to its row and the MIN-allreduce tells every rank the same
 * answer, so the ranks always make, start or skip the kept request together.
 *
 * allreduce(state, buf, plan) -> int
 *   state  writable int64 buffer, see the ST_* slots below (one per group);
 *   buf    the writable C-contiguous array, reduced in place (MPI_IN_PLACE);
 *   plan   bytes: the verification row (10 int64) then count, datatype, op and the
 *          data's poll budget in ns (4 int64: a larger message polls longer).
 *   Returns DONE, VERIFY_PENDING (the verification did not complete within the poll
 *   budget: the caller waits on its persistent request and goes on in Python),
 *   MISMATCH (the ranks' rows differ), DATA_PENDING (the Iallreduce is started, its
 *   request handle is in state[ST_REQUEST]) or -code for an MPI error code.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>
#include <time.h>

typedef int (*start_fn)(int *request);
typedef int (*test_fn)(int *request, int *flag, void *status);
typedef int (*iallreduce_fn)(const void *sendbuf, void *recvbuf, int count, int datatype,
                             int op, int comm, int *request);
typedef int (*allreduce_init_fn)(const void *sendbuf, void *recvbuf, int count, int datatype,
                                 int op, int comm, int info, int *request);
typedef int (*request_free_fn)(int *request);

static start_fn mpi_start;
static test_fn mpi_test;
static iallreduce_fn mpi_iallreduce;
static allreduce_init_fn mpi_allreduce_init;
static request_free_fn mpi_request_free;

enum { ST_COMM, ST_VERIFYING, ST_VERIFY, ST_VERIFY_IN, ST_VERIFY_OUT, ST_IN_PLACE, ST_POLL_NS,
       ST_REQUEST, ST_INFO_NULL,
       /* the group's persistent data request, and the call it serves (buffer, plan's words) */
       ST_HAS_KEPT, ST_KEPT, ST_KEPT_BUF, ST_KEPT_COUNT, ST_KEPT_TYPE, ST_KEPT_OP,
       /* the previous call's buffer and words */
       ST_PREV_BUF, ST_PREV_COUNT, ST_PREV_TYPE, ST_PREV_OP, ST_SLOTS };
/* The verification buffers: the row (must be equal on every rank), then two flags each rank
 * sets and the MIN-allreduce combines: "my kept request serves this call" and "this call
 * repeats my previous one". */
enum { ROW_WORDS = 10, VERIFY_WORDS = ROW_WORDS + 2, PLAN_WORDS = ROW_WORDS + 4 };
enum { DONE = 0, VERIFY_PENDING = 1, MISMATCH = 2, DATA_PENDING = 3 };
enum { QUICK_POLLS = 32, POLLS_PER_CLOCK = 16 };

static int64_t
now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Test `request` until it completes (1), the budget runs out (0) or MPI fails (-code).
 * A small message completes within the first few polls, before any clock read. */
static int
poll(int *request, int64_t budget_ns)
{
    /* MPICH's MPI_Status is 20 bytes; room for any MPICH-derived one. */
    char status[128];
    int flag = 0, rc;
    for (int i = 0; i < QUICK_POLLS; i++) {
        if ((rc = mpi_test(request, &flag, status)) != 0)
            return -rc;
        if (flag)
            return 1;
    }
    int64_t until = now_ns() + budget_ns;
    for (;;) {
        for (int i = 0; i < POLLS_PER_CLOCK; i++) {
            if ((rc = mpi_test(request, &flag, status)) != 0)
                return -rc;
            if (flag)
                return 1;
        }
        if (now_ns() >= until)
            return 0;
    }
}

static int
same_call(const int64_t *st, int at, intptr_t buf, const int64_t *plan)
{
    return st[at] == (int64_t)buf && st[at + 1] == plan[ROW_WORDS] &&
           st[at + 2] == plan[ROW_WORDS + 1] && st[at + 3] == plan[ROW_WORDS + 2];
}

/* The data, once the verification matched: `all_kept` (every rank's kept request serves
 * this call: they were made together, so they match) starts the kept request; `all_repeat`
 * (every rank repeats its previous call) makes a new kept request, every rank in this same
 * call (MPI_Allreduce_init is collective), and starts it; otherwise an Iallreduce.  A kept
 * request is a persistent collective: MPICH's runs a faster schedule than its Iallreduce
 * (1 MiB, 2 ranks: 199-205 against 207-222 us, blocking MPI_Allreduce 199-202). */
static int
run_data(int64_t *st, int64_t *request_out, char *buf, const int64_t *plan, int all_kept,
         int all_repeat)
{
    int rc, request = 0, kept = 0;
    if (all_kept) {
        request = (int)st[ST_KEPT];
        kept = 1;
        if ((rc = mpi_start(&request)) != 0)
            return -rc;
    }
    else if (all_repeat) {
        if (st[ST_HAS_KEPT]) {
            int old = (int)st[ST_KEPT];
            st[ST_HAS_KEPT] = 0;
            if ((rc = mpi_request_free(&old)) != 0)
                return -rc;
        }
        if ((rc = mpi_allreduce_init((const void *)(intptr_t)st[ST_IN_PLACE], buf,
                                     (int)plan[ROW_WORDS], (int)plan[ROW_WORDS + 1],
                                     (int)plan[ROW_WORDS + 2], (int)st[ST_COMM],
                                     (int)st[ST_INFO_NULL], &request)) != 0)
            return -rc;
        st[ST_HAS_KEPT] = 1;
        st[ST_KEPT] = request;
        st[ST_KEPT_BUF] = (int64_t)(intptr_t)buf;
        memcpy(&st[ST_KEPT_COUNT], &plan[ROW_WORDS], 3 * sizeof(int64_t));
        kept = 1;
        if ((rc = mpi_start(&request)) != 0)
            return -rc;
    }
    else {
        rc = mpi_iallreduce((const void *)(intptr_t)st[ST_IN_PLACE], buf, (int)plan[ROW_WORDS],
                            (int)plan[ROW_WORDS + 1], (int)plan[ROW_WORDS + 2],
                            (int)st[ST_COMM], &request);
        if (rc != 0)
            return -rc;
    }
    rc = poll(&request, plan[ROW_WORDS + 3]);
    if (rc < 0)
        return rc;
    if (rc == 0) {
        *request_out = kept ? st[ST_KEPT] : request;
        return DATA_PENDING;
    }
    return DONE;
}

static int
run_allreduce(int64_t *st, int64_t *request_out, char *buf, const int64_t *plan)
{
    int rc;
    const int kept = st[ST_HAS_KEPT] && same_call(st, ST_KEPT_BUF, (intptr_t)buf, plan);
    const int repeat = same_call(st, ST_PREV_BUF, (intptr_t)buf, plan);
    st[ST_PREV_BUF] = (int64_t)(intptr_t)buf;
    memcpy(&st[ST_PREV_COUNT], &plan[ROW_WORDS], 3 * sizeof(int64_t));
    if (!st[ST_VERIFYING])          /* a flag: MPICH's handles are negative ints too */
        return run_data(st, request_out, buf, plan, 0, 0);  /* no flags exchanged: no kept */
    int verify = (int)st[ST_VERIFY];
    int64_t *in = (int64_t *)(intptr_t)st[ST_VERIFY_IN];
    const int64_t *out = (const int64_t *)(intptr_t)st[ST_VERIFY_OUT];
    memcpy(in, plan, ROW_WORDS * sizeof(int64_t));
    in[ROW_WORDS] = kept;
    in[ROW_WORDS + 1] = repeat;
    if ((rc = mpi_start(&verify)) != 0)
        return -rc;
    rc = poll(&verify, st[ST_POLL_NS]);
    if (rc <= 0)
        return rc < 0 ? rc : VERIFY_PENDING;
    if (memcmp(out, plan, ROW_WORDS * sizeof(int64_t)))
        return MISMATCH;
    return run_data(st, request_out, buf, plan, (int)out[ROW_WORDS], (int)out[ROW_WORDS + 1]);
}

static int
get_buffer(PyObject *obj, Py_buffer *view, int writable, Py_ssize_t min_len, const char *what)
{
    if (PyObject_GetBuffer(obj, view, (writable ? PyBUF_WRITABLE : 0) | PyBUF_C_CONTIGUOUS) < 0)
        return -1;
    if (view->len < min_len) {
        PyErr_Format(PyExc_ValueError, "%s: %zd bytes, at least %zd needed", what,
                     view->len, min_len);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(allreduce_doc,
"allreduce(state, buf, plan) -> int\n\n"
"The verification (when state[1] is not 0: the request in state[2]) and the\n"
"allreduce of `buf` in place (the kept request, a new one or an Iallreduce), polled\n"
"for state[6] ns and plan[13] ns.  0 done,\n"
"1 verification pending, 2 mismatch, 3 data pending (its request in state[7]), -code an MPI error.\n"
"bind() first.");

static PyObject *
call(PyObject *const *args, Py_ssize_t nargs, int data_only)
{
    Py_buffer st, data, plan;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "allreduce(state, buf, plan) takes 3 arguments");
        return NULL;
    }
    if (mpi_iallreduce == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "zray._mpi_hot: bind() was not called");
        return NULL;
    }
    if (get_buffer(args[0], &st, 1, ST_SLOTS * sizeof(int64_t), "state") < 0)
        return NULL;
    if (get_buffer(args[1], &data, 1, 0, "buf") < 0) {
        PyBuffer_Release(&st);
        return NULL;
    }
    if (get_buffer(args[2], &plan, 0, PLAN_WORDS * sizeof(int64_t), "plan") < 0) {
        PyBuffer_Release(&data);
        PyBuffer_Release(&st);
        return NULL;
    }
    int64_t *slots = st.buf, request = 0;
    int rc;
    const int after_verify = data_only;
    Py_BEGIN_ALLOW_THREADS
    if (after_verify) {
        const int64_t *out = (const int64_t *)(intptr_t)slots[ST_VERIFY_OUT];
        rc = run_data(slots, &request, data.buf, plan.buf, (int)out[ROW_WORDS],
                      (int)out[ROW_WORDS + 1]);
    }
    else
        rc = run_allreduce(slots, &request, data.buf, plan.buf);
    Py_END_ALLOW_THREADS
    if (rc == DATA_PENDING)
        slots[ST_REQUEST] = request;
    PyBuffer_Release(&plan);
    PyBuffer_Release(&data);
    PyBuffer_Release(&st);
    return PyLong_FromLong(rc);
}

static PyObject *
allreduce(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    return call(args, nargs, 0);
}

PyDoc_STRVAR(data_doc,
"data(state, buf, plan) -> int\n\n"
"allreduce()'s data part, after the caller completed a pending verification and found\n"
"the rows equal: the kept request, a new one or an Iallreduce as the flags say.");

static PyObject *
data(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    return call(args, nargs, 1);
}

PyDoc_STRVAR(bind_doc,
"bind(start, test, iallreduce, allreduce_init, request_free) -> None\n\n"
"The addresses of MPI_Start, MPI_Test, MPI_Iallreduce, MPI_Allreduce_init and\n"
"MPI_Request_free (MPICH's ABI: int handles).");

static PyObject *
bind(PyObject *Py_UNUSED(module), PyObject *args)
{
    unsigned long long a[5];
    if (!PyArg_ParseTuple(args, "KKKKK:bind", &a[0], &a[1], &a[2], &a[3], &a[4]))
        return NULL;
    for (int i = 0; i < 5; i++) {
        if (!a[i]) {
            PyErr_SetString(PyExc_ValueError, "bind: a function address is 0");
            return NULL;
        }
    }
    mpi_start = (start_fn)(uintptr_t)a[0];
    mpi_test = (test_fn)(uintptr_t)a[1];
    mpi_iallreduce = (iallreduce_fn)(uintptr_t)a[2];
    mpi_allreduce_init = (allreduce_init_fn)(uintptr_t)a[3];
    mpi_request_free = (request_free_fn)(uintptr_t)a[4];
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"allreduce", (PyCFunction)(void (*)(void))allreduce, METH_FASTCALL, allreduce_doc},
    {"data", (PyCFunction)(void (*)(void))data, METH_FASTCALL, data_doc},
    {"bind", bind, METH_VARARGS, bind_doc},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef mpi_hot_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "zray._mpi_hot",
    .m_doc = "The mpi backend's small allreduce in C (MPICH's ABI).",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__mpi_hot(void)
{
    PyObject *m = PyModule_Create(&mpi_hot_module);
    if (m == NULL)
        return NULL;
    /* the slots the Python side reads: a pending request, the kept one */
    if (PyModule_AddIntConstant(m, "SLOTS", ST_SLOTS) < 0 ||
        PyModule_AddIntConstant(m, "SLOT_REQUEST", ST_REQUEST) < 0 ||
        PyModule_AddIntConstant(m, "SLOT_HAS_KEPT", ST_HAS_KEPT) < 0 ||
        PyModule_AddIntConstant(m, "SLOT_KEPT", ST_KEPT) < 0 ||
        PyModule_AddIntConstant(m, "VERIFY_WORDS", VERIFY_WORDS) < 0 ||
        PyModule_AddIntConstant(m, "PLAN_WORDS", PLAN_WORDS) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
