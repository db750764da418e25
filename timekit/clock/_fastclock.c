/* IntervalClock.now()'s hot path in C: two vDSO clock reads, integer and double arithmetic, one
 * TimeInterval. Exactly the pure-Python path's arithmetic (tests/test_fastclock.py holds the two
 * equal); whatever is not the common case (a new generation published, a wall-clock step or a
 * preemption between the reads, boottime before the anchor) is handed back to the Python path.
 *
 * Hot(gen, interval_type, slow): one per mapped state file; starts disabled (every call -> slow()).
 *   gen: an object exporting the published generation counter (a memoryview cast to 'Q'), or None
 * hot.set(gen_seen, a_bt, e0, l0, r_lo, r_hi, lo_d, hi_d, sync_bt, void_bt, leap_bt, anchor_unknown)
 *   the constants of the state loaded at generation `gen_seen` (updated in place, so a caller that
 *   keeps `now = clock.now` follows new states); lo_d/hi_d: bounds of realtime - boottime without a
 *   step; sync_bt/void_bt/leap_bt: boottime instants from which the status turns free_running /
 *   unknown and the leap widening applies.
 * hot.disable()  -> every call goes to slow() (no state with an interval)
 * hot.detach()   -> disable and release the counter (the clock closes; a caller may still hold us)
 * hot()          -> the interval now (calls `slow()` for what it does not handle)
 * hot.at(bt, rt) -> the interval at those readings, or None where `slow` would be called (tests)
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <time.h>

#define LEAP_NS 1000000000LL

typedef struct {
    PyObject_HEAD
    Py_buffer gen;
    int has_gen;
    uint64_t gen_seen;
    long long a_bt, e0, l0, lo_d, hi_d, sync_bt, void_bt, leap_bt;
    double r_lo, r_hi;
    int anchor_unknown;
    int enabled;
    PyTypeObject *interval_type;
    PyObject *slow;
} Hot;

static PyObject *s_sync, *s_free, *s_unknown;

static int hot_traverse(Hot *self, visitproc visit, void *arg) {
    Py_VISIT(self->slow);  /* a bound method of the clock that holds this object: a cycle */
    Py_VISIT(self->interval_type);
    return 0;
}

static int hot_clear(Hot *self) {
    Py_CLEAR(self->slow);
    Py_CLEAR(self->interval_type);
    self->enabled = 0;
    return 0;
}

static void hot_dealloc(Hot *self) {
    PyObject_GC_UnTrack(self);
    if (self->has_gen) PyBuffer_Release(&self->gen);
    self->has_gen = 0;
    hot_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int hot_init(Hot *self, PyObject *args, PyObject *kwds) {
    PyObject *gen, *itype, *slow;
    if (!PyArg_ParseTuple(args, "OOO", &gen, &itype, &slow)) return -1;
    if (!PyType_Check(itype) || !PyType_IsSubtype((PyTypeObject *)itype, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "interval_type must be a tuple subclass");
        return -1;
    }
    if (gen != Py_None) {
        if (PyObject_GetBuffer(gen, &self->gen, PyBUF_SIMPLE) < 0) return -1;
        self->has_gen = 1;
        if (self->gen.len < (Py_ssize_t)sizeof(uint64_t)) {
            PyErr_SetString(PyExc_ValueError, "the generation buffer is too short");
            return -1;
        }
    }
    Py_INCREF(itype);
    Py_XSETREF(self->interval_type, (PyTypeObject *)itype);
    Py_INCREF(slow);
    Py_XSETREF(self->slow, slow);
    self->enabled = 0;
    return 0;
}

static PyObject *hot_set(Hot *self, PyObject *args) {
    unsigned long long gen_seen;
    int anchor_unknown;
    long long a_bt, e0, l0, lo_d, hi_d, sync_bt, void_bt, leap_bt;
    double r_lo, r_hi;
    if (!PyArg_ParseTuple(args, "KLLLddLLLLLp", &gen_seen, &a_bt, &e0, &l0, &r_lo, &r_hi, &lo_d, &hi_d,
                          &sync_bt, &void_bt, &leap_bt, &anchor_unknown))
        return NULL;
    self->gen_seen = gen_seen;
    self->a_bt = a_bt; self->e0 = e0; self->l0 = l0; self->r_lo = r_lo; self->r_hi = r_hi;
    self->lo_d = lo_d; self->hi_d = hi_d; self->sync_bt = sync_bt; self->void_bt = void_bt;
    self->leap_bt = leap_bt; self->anchor_unknown = anchor_unknown;
    self->enabled = 1;
    Py_RETURN_NONE;
}

static PyObject *hot_disable(Hot *self, PyObject *unused) {
    self->enabled = 0;
    Py_RETURN_NONE;
}

static PyObject *hot_detach(Hot *self, PyObject *unused) {
    self->enabled = 0;
    if (self->has_gen) PyBuffer_Release(&self->gen);
    self->has_gen = 0;
    Py_RETURN_NONE;
}

/* The interval at (bt, rt), or NULL without an exception where the Python path must decide. */
static PyObject *compute(Hot *self, long long bt, long long rt) {
    long long d = rt - bt;
    if (d < self->lo_d || d > self->hi_d) return NULL;  /* a step, or preempted between the reads */
    long long age = bt - self->a_bt;
    if (age < 0) return NULL;  /* before the anchor: clamped or a causality error, in Python */
    PyObject *status;
    if (self->anchor_unknown || bt > self->void_bt) status = s_unknown;
    else if (bt <= self->sync_bt) status = s_sync;
    else status = s_free;
    double fage = (double)age;  /* as Python's int * float: the int rounded to the nearest double */
    long long e = self->e0 + age + (long long)(fage * self->r_lo);  /* C casts truncate toward zero, */
    long long l = self->l0 + age + (long long)(fage * self->r_hi);  /* as Python's int() does */
    if (bt >= self->leap_bt) {
        e -= LEAP_NS;
        l += LEAP_NS;
    }
    PyObject *pe = PyLong_FromLongLong(e);
    PyObject *pl = PyLong_FromLongLong(l);
    if (!pe || !pl) {
        Py_XDECREF(pe);
        Py_XDECREF(pl);
        return NULL;
    }
    PyObject *out = self->interval_type->tp_alloc(self->interval_type, 3);
    if (!out) {
        Py_DECREF(pe);
        Py_DECREF(pl);
        return NULL;
    }
    Py_INCREF(status);
    PyTuple_SET_ITEM(out, 0, pe);
    PyTuple_SET_ITEM(out, 1, pl);
    PyTuple_SET_ITEM(out, 2, status);
    return out;
}

static PyObject *hot_call(Hot *self, PyObject *args, PyObject *kwds) {
    if (!self->slow) {
        PyErr_SetString(PyExc_RuntimeError, "this clock was closed");
        return NULL;
    }
    if (!self->enabled) return PyObject_CallNoArgs(self->slow);
    if (self->has_gen) {
        uint64_t g = __atomic_load_n((uint64_t *)self->gen.buf, __ATOMIC_ACQUIRE);
        if (g != self->gen_seen) return PyObject_CallNoArgs(self->slow);
    }
    struct timespec b, r;
    clock_gettime(CLOCK_BOOTTIME, &b);
    clock_gettime(CLOCK_REALTIME, &r);
    long long bt = (long long)b.tv_sec * 1000000000LL + b.tv_nsec;
    long long rt = (long long)r.tv_sec * 1000000000LL + r.tv_nsec;
    PyObject *out = compute(self, bt, rt);
    if (out || PyErr_Occurred()) return out;
    return PyObject_CallNoArgs(self->slow);
}

static PyObject *hot_at(Hot *self, PyObject *args) {
    long long bt, rt;
    if (!PyArg_ParseTuple(args, "LL", &bt, &rt)) return NULL;
    if (!self->enabled) Py_RETURN_NONE;
    PyObject *out = compute(self, bt, rt);
    if (out || PyErr_Occurred()) return out;
    Py_RETURN_NONE;
}

static PyMethodDef hot_methods[] = {
    {"at", (PyCFunction)hot_at, METH_VARARGS, "The interval at (boottime, realtime) ns, or None."},
    {"set", (PyCFunction)hot_set, METH_VARARGS, "Load the constants of a state (see the file's head)."},
    {"disable", (PyCFunction)hot_disable, METH_NOARGS, "Send every call to the Python path."},
    {"detach", (PyCFunction)hot_detach, METH_NOARGS, "Let the mapped counter go (the clock closes)."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject HotType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "timekit.clock._fastclock.Hot",
    .tp_basicsize = sizeof(Hot),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_traverse = (traverseproc)hot_traverse,
    .tp_clear = (inquiry)hot_clear,
    .tp_doc = "IntervalClock.now()'s hot path for one published state.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)hot_init,
    .tp_dealloc = (destructor)hot_dealloc,
    .tp_call = (ternaryfunc)hot_call,
    .tp_methods = hot_methods,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fastclock", "IntervalClock.now()'s hot path in C (optional).", -1, NULL,
};

PyMODINIT_FUNC PyInit__fastclock(void) {
    if (PyType_Ready(&HotType) < 0) return NULL;
    s_sync = PyUnicode_InternFromString("synchronized");
    s_free = PyUnicode_InternFromString("free_running");
    s_unknown = PyUnicode_InternFromString("unknown");
    if (!s_sync || !s_free || !s_unknown) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    Py_INCREF(&HotType);
    if (PyModule_AddObject(m, "Hot", (PyObject *)&HotType) < 0) {
        Py_DECREF(&HotType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
