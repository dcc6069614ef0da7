/* The counting kernel of concmon.monitor, in C.
 *
 * Why C: on a loaded server the counting of a request (admit, then finish) is about 150 Python
 * bytecodes and a lock round trip, and a request's cost follows its bytecodes; here it is two
 * calls. Why no lock: every method below changes the counters in one stretch of C that runs no
 * Python code and allocates nothing, so under the GIL no other thread can run in the middle of
 * it, and a reader (GroupBase._take) copies a whole group in one such stretch. The module
 * refuses to build without the GIL (a free-threaded interpreter); concmon then uses the
 * pure-Python kernel, which takes the monitor's lock instead.
 *
 * The Python side (concmon/_kernel.py) is the specification: the same classes, fields and
 * results. tests/core runs against both.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#ifdef Py_GIL_DISABLED
#error "concmon._counting relies on the GIL; concmon uses its pure-Python kernel here"
#endif

static PyObject *OUTCOME_OK = NULL;
static PyObject *OUTCOME_FAILED = NULL;
static PyObject *ADD_LOCKED = NULL; /* "_add_locked" */
static PyObject *LOOKUP = NULL;     /* "_lookup" */

static inline double
now_seconds(void)
{
#if PY_VERSION_HEX >= 0x030D0000
    PyTime_t t;
    (void)PyTime_PerfCounterRaw(&t);
    return PyTime_AsSecondsDouble(t);
#else
    return _PyTime_AsSecondsDouble(_PyTime_GetPerfCounter());
#endif
}

/* -- GroupBase: the figures of one kind of endpoint ------------------------------------------ */

typedef struct {
    PyObject_HEAD
    PyObject *endpoints; /* dict: name -> Counters */
    long long active;
    long long peak;
    long long interval_peak;
} GroupObject;

/* -- Counters: one endpoint ------------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    GroupObject *group;
    long long active;
    long long peak;
    long long interval_peak;
    long long completed;
    long long failed;
    long long cancelled;
    long long rejected;
    long long completed_mark;
    long long untimed;
    long long a0;
    double dur_sum;
    double dur_max;
    double moment;
} CountersObject;

typedef struct {
    PyObject_HEAD
    CountersObject *counters; /* NULL once finished (or never admitted) */
    double started;
} TicketObject;

static PyTypeObject GroupType;
static PyTypeObject CountersType;
static PyTypeObject TicketType;

/* The two halves of every count, shared by admit/increment and finish/decrement. Neither runs
 * Python code nor allocates: called between reading the clock and returning. */
static inline void
count_begin(CountersObject *c, double now)
{
    GroupObject *g = c->group;
    long long a;
    c->moment -= now;
    a = ++c->active;
    if (a > c->interval_peak) {
        c->interval_peak = a;
        if (a > c->peak) {
            c->peak = a;
        }
    }
    a = ++g->active;
    if (a > g->interval_peak) {
        g->interval_peak = a;
        if (a > g->peak) {
            g->peak = a;
        }
    }
}

static inline void
count_end(CountersObject *c, double now, PyObject *outcome)
{
    c->moment += now;
    c->active -= 1;
    c->completed += 1;
    if (outcome != OUTCOME_OK) {
        if (outcome == OUTCOME_FAILED) {
            c->failed += 1;
        }
        else {
            c->cancelled += 1;
        }
    }
    c->group->active -= 1;
}

static int
Counters_traverse(CountersObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->group);
    return 0;
}

/* No tp_clear: a cycle through counters always runs through their group's dict, which the
 * group's tp_clear breaks, so ``group`` is never NULL while the counters live (a finish run by a
 * finalizer during a collection still finds it). */
static void
Counters_dealloc(CountersObject *self)
{
    PyObject_GC_UnTrack(self);
    Py_CLEAR(self->group);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
Counters_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    PyObject *group;
    if (!PyArg_ParseTuple(args, "O!:Counters", &GroupType, &group)) {
        return NULL;
    }
    CountersObject *self = (CountersObject *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    Py_INCREF(group);
    self->group = (GroupObject *)group;
    return (PyObject *)self;
}

static PyObject *
Counters_reject(CountersObject *self, PyObject *Py_UNUSED(ignored))
{
    self->rejected += 1;
    Py_RETURN_NONE;
}

static PyObject *
Counters_get_group(CountersObject *self, void *Py_UNUSED(closure))
{
    return Py_NewRef((PyObject *)self->group);
}

static PyMethodDef Counters_methods[] = {
    {"reject", (PyCFunction)Counters_reject, METH_NOARGS, "Count one rejected request."},
    {NULL}};

#define RO_LL(name) {#name, T_LONGLONG, offsetof(CountersObject, name), READONLY, NULL}
#define RO_D(name) {#name, T_DOUBLE, offsetof(CountersObject, name), READONLY, NULL}

static PyMemberDef Counters_members[] = {
    RO_LL(active), RO_LL(peak), RO_LL(interval_peak), RO_LL(completed), RO_LL(failed),
    RO_LL(cancelled), RO_LL(rejected), RO_LL(completed_mark), RO_LL(untimed), RO_LL(a0),
    RO_D(dur_sum), RO_D(dur_max), RO_D(moment), {NULL}};

static PyGetSetDef Counters_getset[] = {
    {"group", (getter)Counters_get_group, NULL, "The group the counters belong to.", NULL},
    {NULL}};

static PyTypeObject CountersType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "concmon._counting.Counters",
    .tp_doc = "The counters of one endpoint; changed only by the kernel's own methods.",
    .tp_basicsize = sizeof(CountersObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = Counters_new,
    .tp_traverse = (traverseproc)Counters_traverse,
    .tp_dealloc = (destructor)Counters_dealloc,
    .tp_methods = Counters_methods,
    .tp_members = Counters_members,
    .tp_getset = Counters_getset,
};

/* -- Ticket ---------------------------------------------------------------------------------- */

static int
Ticket_traverse(TicketObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->counters);
    return 0;
}

static int
Ticket_clear(TicketObject *self)
{
    Py_CLEAR(self->counters);
    return 0;
}

static void
Ticket_dealloc(TicketObject *self)
{
    PyObject_GC_UnTrack(self);
    Ticket_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
Ticket_finish(TicketObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *outcome = OUTCOME_OK;
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    if (nargs + nkw > 1) {
        PyErr_Format(PyExc_TypeError, "finish() takes at most 1 argument (%zd given)", nargs + nkw);
        return NULL;
    }
    if (nkw == 1) {
        if (!PyUnicode_Check(PyTuple_GET_ITEM(kwnames, 0)) ||
            PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(kwnames, 0), "outcome") != 0) {
            PyErr_Format(PyExc_TypeError, "finish() got an unexpected keyword argument %R",
                         PyTuple_GET_ITEM(kwnames, 0));
            return NULL;
        }
    }
    if (nargs + nkw == 1) {
        outcome = args[0];
    }
    CountersObject *c = self->counters;
    if (c == NULL) {
        Py_RETURN_FALSE;
    }
    double now = now_seconds();
    self->counters = NULL;
    count_end(c, now, outcome);
    double d = now - self->started;
    c->dur_sum += d;
    if (d > c->dur_max) {
        c->dur_max = d;
    }
    Py_DECREF(c);
    Py_RETURN_TRUE;
}

static PyObject *
Ticket_get_counters(TicketObject *self, void *Py_UNUSED(closure))
{
    if (self->counters == NULL) {
        Py_RETURN_NONE;
    }
    return Py_NewRef((PyObject *)self->counters);
}

static int
Ticket_set_counters(TicketObject *self, PyObject *value, void *Py_UNUSED(closure))
{
    if (value == NULL || value == Py_None) {
        Py_CLEAR(self->counters);
        return 0;
    }
    if (!PyObject_TypeCheck(value, &CountersType)) {
        PyErr_SetString(PyExc_TypeError, "_counters must be None or Counters");
        return -1;
    }
    PyObject *old = (PyObject *)self->counters;
    self->counters = (CountersObject *)Py_NewRef(value);
    Py_XDECREF(old);
    return 0;
}

static PyObject *
Ticket_get_open(TicketObject *self, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(self->counters != NULL);
}

static PyMethodDef Ticket_methods[] = {
    {"finish", (PyCFunction)(void (*)(void))Ticket_finish, METH_FASTCALL | METH_KEYWORDS,
     "finish(outcome=Outcome.OK)\n--\n\n"
     "Close the request; returns False (and counts nothing) if it was already closed."},
    {NULL}};

static PyMemberDef Ticket_members[] = {
    {"started", T_DOUBLE, offsetof(TicketObject, started), 0, "perf_counter() at the start."},
    {NULL}};

static PyGetSetDef Ticket_getset[] = {
    {"_counters", (getter)Ticket_get_counters, (setter)Ticket_set_counters,
     "The open request's counters, None once closed.", NULL},
    {"open", (getter)Ticket_get_open, NULL, "Whether the request is still counted active.",
     NULL},
    {NULL}};

static PyTypeObject TicketType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "concmon._counting.Ticket",
    .tp_doc = "One counted request. Created by begin; finish closes it exactly once.",
    .tp_basicsize = sizeof(TicketObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    /* tp_new is object's (set at import): adapters make tickets with object.__new__. */
    .tp_traverse = (traverseproc)Ticket_traverse,
    .tp_clear = (inquiry)Ticket_clear,
    .tp_dealloc = (destructor)Ticket_dealloc,
    .tp_methods = Ticket_methods,
    .tp_members = Ticket_members,
    .tp_getset = Ticket_getset,
};

/* -- GroupBase methods ----------------------------------------------------------------------- */

static int
Group_traverse(GroupObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->endpoints);
    return 0;
}

static int
Group_clear(GroupObject *self)
{
    Py_CLEAR(self->endpoints);
    return 0;
}

static void
Group_dealloc(GroupObject *self)
{
    PyObject_GC_UnTrack(self);
    Group_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
Group_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    GroupObject *self = (GroupObject *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->endpoints = PyDict_New();
    if (self->endpoints == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static int
not_counters(PyObject *value)
{
    /* Only the kernel's own objects may sit in ``endpoints``: anything else would be read as
     * counters. Counters cannot be subclassed, so the check is one pointer comparison. */
    if (Py_IS_TYPE(value, &CountersType)) {
        return 0;
    }
    PyErr_Format(PyExc_TypeError, "endpoints must map names to Counters, found %R", value);
    return 1;
}

static int
cleared(GroupObject *self)
{
    /* Only a group the garbage collector is tearing down has no dict. */
    if (self->endpoints != NULL) {
        return 0;
    }
    PyErr_SetString(PyExc_RuntimeError, "the group is being collected");
    return 1;
}

static PyObject *
lookup(GroupObject *self, PyObject *name)
{
    if (cleared(self)) {
        return NULL;
    }
    /* A name whose __eq__ is Python code can let another thread reset the group (and free the
     * dict) in the middle of the look-up: hold the dict meanwhile. A str runs no code here. */
    PyObject *endpoints = Py_NewRef(self->endpoints);
    PyObject *c = PyDict_GetItemWithError(endpoints, name);
    Py_XINCREF(c);
    Py_DECREF(endpoints);
    if (c != NULL && not_counters(c)) {
        Py_CLEAR(c);
    }
    return c;
}

/* The counters of ``name``, a new reference; made by the Python side's ``_add`` (under the
 * monitor's lock, with the cardinality limit) when the name is new. Python code may run here,
 * before any counting starts. */
static CountersObject *
counters_for(GroupObject *self, PyObject *name)
{
    PyObject *c = lookup(self, name);
    if (c != NULL) {
        return (CountersObject *)c;
    }
    if (PyErr_Occurred()) {
        return NULL;
    }
    c = PyObject_CallMethodOneArg((PyObject *)self, ADD_LOCKED, name);
    if (c != NULL && !PyObject_TypeCheck(c, &CountersType)) {
        PyErr_SetString(PyExc_TypeError, "_add_locked must return Counters");
        Py_CLEAR(c);
    }
    return (CountersObject *)c;
}

static PyObject *
Group_admit(GroupObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "admit() takes 2 arguments (%zd given)", nargs);
        return NULL;
    }
    if (!PyObject_TypeCheck(args[0], &TicketType)) {
        PyErr_SetString(PyExc_TypeError, "admit() needs a Ticket");
        return NULL;
    }
    TicketObject *ticket = (TicketObject *)args[0];
    double now = now_seconds();
    CountersObject *c = counters_for(self, args[1]);
    if (c == NULL) {
        return NULL;
    }
    /* From here to the end no Python code runs: the count is atomic under the GIL. The group
     * counted is the counters' own, which is this one unless a reset orphaned them meanwhile. */
    CountersObject *old = ticket->counters;
    ticket->started = now;
    count_begin(c, now);
    ticket->counters = c; /* the reference counters_for made */
    Py_XDECREF(old);
    Py_RETURN_NONE;
}

static PyObject *
Group_increment(GroupObject *self, PyObject *name)
{
    double now = now_seconds();
    CountersObject *c = counters_for(self, name);
    if (c == NULL) {
        return NULL;
    }
    count_begin(c, now);
    Py_DECREF(c);
    Py_RETURN_NONE;
}

static PyObject *
Group_decrement_counted(GroupObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "_decrement() takes 2 arguments (%zd given)", nargs);
        return NULL;
    }
    double now = now_seconds();
    PyObject *c = lookup(self, args[0]);
    if (c == NULL) {
        if (PyErr_Occurred()) {
            return NULL;
        }
        c = PyObject_CallMethodOneArg((PyObject *)self, LOOKUP, args[0]);
        if (c == NULL) {
            return NULL;
        }
    }
    if (c == Py_None || !PyObject_TypeCheck(c, &CountersType) ||
        ((CountersObject *)c)->active <= 0) {
        Py_DECREF(c);
        Py_RETURN_FALSE;
    }
    CountersObject *counters = (CountersObject *)c;
    count_end(counters, now, args[1]);
    counters->untimed += 1;
    Py_DECREF(c);
    Py_RETURN_TRUE;
}

typedef struct {
    PyObject *name;
    long long active, peak, interval_peak, completed, failed, cancelled, rejected, count;
    double dur_sum, dur_max, area;
} Taken;

/* _take(now, interval, reset) -> (active, peak, interval_peak, [(name, figures), ...])
 *
 * figures: (active, peak, interval_peak, completed, failed, cancelled, rejected, timed_count,
 * dur_sum, dur_max, area). The whole group is copied (and, with reset, a new interval begun)
 * before any object is made: allocating can run the garbage collector and with it Python code,
 * so it comes after the atomic copy. */
static PyObject *
Group_take(GroupObject *self, PyObject *args)
{
    double now, interval;
    int reset;
    if (!PyArg_ParseTuple(args, "ddp:_take", &now, &interval, &reset) || cleared(self)) {
        return NULL;
    }
    Py_ssize_t n = PyDict_GET_SIZE(self->endpoints);
    Py_ssize_t pos = 0, i = 0;
    PyObject *key, *value;
    while (PyDict_Next(self->endpoints, &pos, &key, &value)) {
        if (not_counters(value)) {
            return NULL;
        }
    }
    Taken *taken = PyMem_Malloc(sizeof(Taken) * (size_t)(n > 0 ? n : 1));
    if (taken == NULL) {
        return PyErr_NoMemory();
    }
    /* -- atomic: no Python code, no Python allocation -- */
    pos = 0;
    while (i < n && PyDict_Next(self->endpoints, &pos, &key, &value)) {
        CountersObject *c = (CountersObject *)value;
        Taken *t = &taken[i++];
        t->name = Py_NewRef(key);
        t->active = c->active;
        t->peak = c->peak;
        t->interval_peak = c->interval_peak;
        t->completed = c->completed;
        t->failed = c->failed;
        t->cancelled = c->cancelled;
        t->rejected = c->rejected;
        t->count = c->completed - c->completed_mark - c->untimed;
        t->dur_sum = c->dur_sum;
        t->dur_max = c->dur_max;
        t->area = (double)c->active * now - (double)c->a0 * (now - interval) + c->moment;
        if (reset) {
            c->interval_peak = c->active;
            c->a0 = c->active;
            c->moment = 0.0;
            c->dur_sum = 0.0;
            c->dur_max = 0.0;
            c->completed_mark = c->completed;
            c->untimed = 0;
        }
    }
    long long active = self->active, peak = self->peak, interval_peak = self->interval_peak;
    if (reset) {
        self->interval_peak = self->active;
    }
    /* -- end of the atomic part -- */
    PyObject *list = PyList_New(i);
    PyObject *result = NULL;
    if (list != NULL) {
        Py_ssize_t j;
        for (j = 0; j < i; j++) {
            Taken *t = &taken[j];
            PyObject *item = Py_BuildValue(
                "O(LLLLLLLLddd)", t->name, t->active, t->peak, t->interval_peak, t->completed,
                t->failed, t->cancelled, t->rejected, t->count, t->dur_sum, t->dur_max, t->area);
            if (item == NULL) {
                break;
            }
            PyList_SET_ITEM(list, j, item);
        }
        if (j == i) {
            result = Py_BuildValue("LLLN", active, peak, interval_peak, list);
            list = NULL; /* stolen by N, even on failure */
        }
        Py_XDECREF(list);
    }
    for (Py_ssize_t j = 0; j < i; j++) {
        Py_DECREF(taken[j].name);
    }
    PyMem_Free(taken);
    return result;
}

/* _orphan_all(orphans): every endpoint's counters now belong to ``orphans`` (a ticket opened
 * before the reset finishes against state nobody reads) and the group starts empty. */
static PyObject *
Group_orphan_all(GroupObject *self, PyObject *orphans)
{
    if (!PyObject_TypeCheck(orphans, &GroupType)) {
        PyErr_SetString(PyExc_TypeError, "_orphan_all() needs a group");
        return NULL;
    }
    if (cleared(self)) {
        return NULL;
    }
    PyObject *fresh = PyDict_New();
    if (fresh == NULL) {
        return NULL;
    }
    Py_ssize_t pos = 0, moved = 0;
    PyObject *key, *value;
    /* -- atomic -- */
    while (PyDict_Next(self->endpoints, &pos, &key, &value)) {
        CountersObject *c = (CountersObject *)value;
        if (Py_IS_TYPE(value, &CountersType) && c->group == self) {
            Py_INCREF(orphans);
            c->group = (GroupObject *)orphans;
            ((GroupObject *)orphans)->active += c->active; /* its open tickets finish there */
            moved++;
        }
    }
    PyObject *old = self->endpoints;
    self->endpoints = fresh;
    self->active = 0;
    self->peak = 0;
    self->interval_peak = 0;
    /* -- end of the atomic part -- */
    /* The references the moved counters held to this group; the caller holds one more, so
     * none of these frees it. */
    for (; moved > 0; moved--) {
        Py_DECREF(self);
    }
    Py_DECREF(old);
    Py_RETURN_NONE;
}

static PyObject *
Group_get_endpoints(GroupObject *self, void *Py_UNUSED(closure))
{
    if (cleared(self)) {
        return NULL;
    }
    return Py_NewRef(self->endpoints);
}

static PyMethodDef Group_methods[] = {
    {"admit", (PyCFunction)(void (*)(void))Group_admit, METH_FASTCALL,
     "admit(ticket, name)\n--\n\nCount a request to name as active under ticket."},
    {"increment", (PyCFunction)Group_increment, METH_O,
     "increment(name)\n--\n\nbegin without a ticket, for callers that pair by name."},
    {"_decrement", (PyCFunction)(void (*)(void))Group_decrement_counted, METH_FASTCALL,
     "_decrement(name, outcome)\n--\n\nFalse (and nothing counted) without a matching begin."},
    {"_take", (PyCFunction)Group_take, METH_VARARGS,
     "_take(now, interval, reset)\n--\n\nThe group's figures, copied in one step."},
    {"_orphan_all", (PyCFunction)Group_orphan_all, METH_O,
     "_orphan_all(orphans)\n--\n\nHand every endpoint's counters to orphans; start empty."},
    {NULL}};

static PyMemberDef Group_members[] = {
    {"active", T_LONGLONG, offsetof(GroupObject, active), READONLY, NULL},
    {"peak", T_LONGLONG, offsetof(GroupObject, peak), READONLY, NULL},
    {"interval_peak", T_LONGLONG, offsetof(GroupObject, interval_peak), READONLY, NULL},
    {NULL}};

static PyGetSetDef Group_getset[] = {
    {"endpoints", (getter)Group_get_endpoints, NULL, "name -> Counters (read, never write).",
     NULL},
    {NULL}};

static PyTypeObject GroupType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "concmon._counting.GroupBase",
    .tp_doc = "The counting state of one kind of endpoint.",
    .tp_basicsize = sizeof(GroupObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = Group_new,
    .tp_traverse = (traverseproc)Group_traverse,
    .tp_clear = (inquiry)Group_clear,
    .tp_dealloc = (destructor)Group_dealloc,
    .tp_methods = Group_methods,
    .tp_members = Group_members,
    .tp_getset = Group_getset,
};

/* -- the module ------------------------------------------------------------------------------ */

static PyObject *
setup(PyObject *module, PyObject *args)
{
    PyObject *ok, *failed;
    if (!PyArg_ParseTuple(args, "OO:setup", &ok, &failed)) {
        return NULL;
    }
    Py_XSETREF(OUTCOME_OK, Py_NewRef(ok));
    Py_XSETREF(OUTCOME_FAILED, Py_NewRef(failed));
    Py_RETURN_NONE;
}

static PyObject *
now(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    return PyFloat_FromDouble(now_seconds());
}

static PyMethodDef module_methods[] = {
    {"setup", setup, METH_VARARGS,
     "setup(ok, failed)\n--\n\nThe outcome objects finish() compares against."},
    {"now", now, METH_NOARGS, "now()\n--\n\nThe clock the kernel reads (time.perf_counter)."},
    {NULL}};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, .m_name = "concmon._counting",
    .m_doc = "The counting kernel in C (see concmon/_kernel.py for the reference).", .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__counting(void)
{
    TicketType.tp_new = PyBaseObject_Type.tp_new;
    ADD_LOCKED = PyUnicode_InternFromString("_add_locked");
    LOOKUP = PyUnicode_InternFromString("_lookup");
    if (ADD_LOCKED == NULL || LOOKUP == NULL) {
        return NULL;
    }
    if (PyType_Ready(&GroupType) < 0 || PyType_Ready(&CountersType) < 0 ||
        PyType_Ready(&TicketType) < 0) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&moduledef);
    if (m == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(m, "GroupBase", (PyObject *)&GroupType) < 0 ||
        PyModule_AddObjectRef(m, "Counters", (PyObject *)&CountersType) < 0 ||
        PyModule_AddObjectRef(m, "Ticket", (PyObject *)&TicketType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
