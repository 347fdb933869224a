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
 * passes the addresses of MPI_Start, MPI_Test and MPI_Iallreduce from the libmpi that
 * mpi4py loaded (ctypes), so this module never links an MPI of its own.  Elsewhere the
 * backend keeps its Python path.
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

static start_fn mpi_start;
static test_fn mpi_test;
static iallreduce_fn mpi_iallreduce;

enum { ST_COMM, ST_VERIFYING, ST_VERIFY, ST_VERIFY_IN, ST_VERIFY_OUT, ST_IN_PLACE, ST_POLL_NS,
       ST_REQUEST, ST_SLOTS };
enum { ROW_WORDS = 10, PLAN_WORDS = ROW_WORDS + 4 };
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
run_allreduce(const int64_t *st, int64_t *request_out, void *buf, const int64_t *plan)
{
    int rc;
    if (st[ST_VERIFYING]) {         /* a flag: MPICH's handles are negative ints too */
        int verify = (int)st[ST_VERIFY];
        memcpy((void *)(intptr_t)st[ST_VERIFY_IN], plan, ROW_WORDS * sizeof(int64_t));
        if ((rc = mpi_start(&verify)) != 0)
            return -rc;
        rc = poll(&verify, st[ST_POLL_NS]);
        if (rc <= 0)
            return rc < 0 ? rc : VERIFY_PENDING;
        if (memcmp((void *)(intptr_t)st[ST_VERIFY_OUT], plan, ROW_WORDS * sizeof(int64_t)))
            return MISMATCH;
    }
    int request = 0;
    rc = mpi_iallreduce((const void *)(intptr_t)st[ST_IN_PLACE], buf, (int)plan[ROW_WORDS],
                        (int)plan[ROW_WORDS + 1], (int)plan[ROW_WORDS + 2],
                        (int)st[ST_COMM], &request);
    if (rc != 0)
        return -rc;
    rc = poll(&request, plan[ROW_WORDS + 3]);
    if (rc < 0)
        return rc;
    if (rc == 0) {
        *request_out = request;
        return DATA_PENDING;
    }
    return DONE;
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
"Iallreduce of `buf` in place, polled for state[6] ns and plan[13] ns.  0 done,\n"
"1 verification pending, 2 mismatch, 3 data pending (its request in state[7]), -code an MPI error.\n"
"bind() first.");

static PyObject *
allreduce(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
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
    Py_BEGIN_ALLOW_THREADS
    rc = run_allreduce(slots, &request, data.buf, plan.buf);
    Py_END_ALLOW_THREADS
    if (rc == DATA_PENDING)
        slots[ST_REQUEST] = request;
    PyBuffer_Release(&plan);
    PyBuffer_Release(&data);
    PyBuffer_Release(&st);
    return PyLong_FromLong(rc);
}

PyDoc_STRVAR(bind_doc,
"bind(start, test, iallreduce) -> None\n\n"
"The addresses of MPI_Start, MPI_Test and MPI_Iallreduce (MPICH's ABI: int handles).");

static PyObject *
bind(PyObject *Py_UNUSED(module), PyObject *args)
{
    unsigned long long start, test, iallreduce;
    if (!PyArg_ParseTuple(args, "KKK:bind", &start, &test, &iallreduce))
        return NULL;
    if (!start || !test || !iallreduce) {
        PyErr_SetString(PyExc_ValueError, "bind: a function address is 0");
        return NULL;
    }
    mpi_start = (start_fn)(uintptr_t)start;
    mpi_test = (test_fn)(uintptr_t)test;
    mpi_iallreduce = (iallreduce_fn)(uintptr_t)iallreduce;
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"allreduce", (PyCFunction)(void (*)(void))allreduce, METH_FASTCALL, allreduce_doc},
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
    if (PyModule_AddIntConstant(m, "SLOTS", ST_SLOTS) < 0 ||
        PyModule_AddIntConstant(m, "PLAN_WORDS", PLAN_WORDS) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
