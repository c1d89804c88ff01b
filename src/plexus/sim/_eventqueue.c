/*
 * plexus.sim._eventqueue: the event loop's priority queue, with its keys in one compact array.
 *
 * Why: with Python's heapq every pop compares about twenty (time, sequence, timer) tuples and their floats,
 * scattered over the heap's memory; in a large run these are cold after every training job (torch's working
 * set evicts them), and the pops were a noticeable share of the simulator's own time. Here the keys (time as a
 * double, sequence number) sit in one array of 16-byte entries.
 *
 * Order: entries leave by (time, sequence), sequence numbers being unique, exactly as from heapq: the simulation
 * sees the same events in the same order (plexus.sim.engine.HeapQueue is the Python twin; the tests run both).
 * pop_until returns the time object that was pushed (a float, or an int from call_at), not a converted one.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

typedef struct {
    double time;
    long long sequence;
} Key;

typedef struct {
    PyObject_HEAD
    Py_ssize_t size, capacity;
    Key *keys;
    PyObject **times; /* the pushed time objects */
    PyObject **items;
} EventQueue;

static int less(const Key *a, const Key *b)
{
    return a->time < b->time || (a->time == b->time && a->sequence < b->sequence);
}

static void move(EventQueue *q, Py_ssize_t to, Py_ssize_t from)
{
    q->keys[to] = q->keys[from];
    q->times[to] = q->times[from];
    q->items[to] = q->items[from];
}

static int EventQueue_grow(EventQueue *q)
{
    Py_ssize_t capacity = q->capacity ? 2 * q->capacity : 256;
    Key *keys = PyMem_Realloc(q->keys, capacity * sizeof(Key));
    if (keys == NULL)
        goto fail;
    q->keys = keys;
    PyObject **times = PyMem_Realloc(q->times, capacity * sizeof(PyObject *));
    if (times == NULL)
        goto fail;
    q->times = times;
    PyObject **items = PyMem_Realloc(q->items, capacity * sizeof(PyObject *));
    if (items == NULL)
        goto fail;
    q->items = items;
    q->capacity = capacity;
    return 0;
fail:
    PyErr_NoMemory();
    return -1;
}

/* push(time, sequence, item) */
static PyObject *EventQueue_push(EventQueue *q, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "push(time, sequence, item)");
        return NULL;
    }
    double time = PyFloat_AsDouble(args[0]);
    if (time == -1.0 && PyErr_Occurred())
        return NULL;
    if (time != time) {
        PyErr_SetString(PyExc_ValueError, "an event's time cannot be NaN");
        return NULL;
    }
    long long sequence = PyLong_AsLongLong(args[1]);
    if (sequence == -1 && PyErr_Occurred())
        return NULL;
    if (q->size == q->capacity && EventQueue_grow(q) < 0)
        return NULL;
    Key key = {time, sequence};
    Py_ssize_t pos = q->size++;
    while (pos > 0) { /* sift the new entry up */
        Py_ssize_t parent = (pos - 1) >> 1;
        if (!less(&key, &q->keys[parent]))
            break;
        move(q, pos, parent);
        pos = parent;
    }
    q->keys[pos] = key;
    Py_INCREF(args[0]);
    Py_INCREF(args[2]);
    q->times[pos] = args[0];
    q->items[pos] = args[2];
    Py_RETURN_NONE;
}

/* pop_until(until) -> (time, item), or None (nothing popped) when the queue is empty or its first entry is
 * later than until */
static PyObject *EventQueue_pop_until(EventQueue *q, PyObject *arg)
{
    double until = PyFloat_AsDouble(arg);
    if (until == -1.0 && PyErr_Occurred())
        return NULL;
    if (q->size == 0 || q->keys[0].time > until)
        Py_RETURN_NONE;
    PyObject *result = PyTuple_New(2);
    if (result == NULL)
        return NULL;
    PyTuple_SET_ITEM(result, 0, q->times[0]); /* the queue's references move to the tuple */
    PyTuple_SET_ITEM(result, 1, q->items[0]);
    Py_ssize_t size = --q->size;
    if (size > 0) { /* the last entry goes to the root and sinks */
        Key key = q->keys[size];
        PyObject *time = q->times[size], *item = q->items[size];
        Py_ssize_t pos = 0, child = 1;
        while (child < size) {
            if (child + 1 < size && less(&q->keys[child + 1], &q->keys[child]))
                child++;
            if (!less(&q->keys[child], &key))
                break;
            move(q, pos, child);
            pos = child;
            child = 2 * pos + 1;
        }
        q->keys[pos] = key;
        q->times[pos] = time;
        q->items[pos] = item;
    }
    return result;
}

/* entries() -> [(time, sequence, item)] in heap order (no particular order) */
static PyObject *EventQueue_entries(EventQueue *q, PyObject *Py_UNUSED(ignored))
{
    PyObject *list = PyList_New(q->size);
    if (list == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < q->size; i++) {
        PyObject *entry = Py_BuildValue("(OLO)", q->times[i], q->keys[i].sequence, q->items[i]);
        if (entry == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, entry);
    }
    return list;
}

static PyObject *EventQueue_reduce(EventQueue *q, PyObject *Py_UNUSED(ignored))
{
    PyObject *entries = EventQueue_entries(q, NULL);
    if (entries == NULL)
        return NULL;
    PyObject *result = Py_BuildValue("(O()N)", (PyObject *)Py_TYPE(q), entries);
    return result;
}

static PyObject *EventQueue_setstate(EventQueue *q, PyObject *entries)
{
    if (!PyList_Check(entries)) {
        PyErr_SetString(PyExc_TypeError, "EventQueue state must be a list of (time, sequence, item)");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(entries); i++) {
        PyObject *entry = PyList_GET_ITEM(entries, i);
        if (!PyTuple_Check(entry) || PyTuple_GET_SIZE(entry) != 3) {
            PyErr_SetString(PyExc_TypeError, "EventQueue state must be a list of (time, sequence, item)");
            return NULL;
        }
        PyObject *done = EventQueue_push(q, ((PyTupleObject *)entry)->ob_item, 3);
        if (done == NULL)
            return NULL;
        Py_DECREF(done);
    }
    Py_RETURN_NONE;
}

static Py_ssize_t EventQueue_len(EventQueue *q)
{
    return q->size;
}

static int EventQueue_traverse(EventQueue *q, visitproc visit, void *arg)
{
    for (Py_ssize_t i = 0; i < q->size; i++) {
        Py_VISIT(q->times[i]);
        Py_VISIT(q->items[i]);
    }
    return 0;
}

static int EventQueue_clear(EventQueue *q)
{
    Py_ssize_t size = q->size;
    q->size = 0;
    for (Py_ssize_t i = 0; i < size; i++) {
        Py_CLEAR(q->times[i]);
        Py_CLEAR(q->items[i]);
    }
    return 0;
}

static void EventQueue_dealloc(EventQueue *q)
{
    PyObject_GC_UnTrack(q);
    EventQueue_clear(q);
    PyMem_Free(q->keys);
    PyMem_Free(q->times);
    PyMem_Free(q->items);
    Py_TYPE(q)->tp_free((PyObject *)q);
}

static PyMethodDef EventQueue_methods[] = {
    {"push", (PyCFunction)(void (*)(void))EventQueue_push, METH_FASTCALL, "push(time, sequence, item)"},
    {"pop_until", (PyCFunction)EventQueue_pop_until, METH_O,
     "pop_until(until) -> (time, item) of the first entry, or None if there is none at or before until"},
    {"entries", (PyCFunction)EventQueue_entries, METH_NOARGS, "entries() -> [(time, sequence, item)], unordered"},
    {"__reduce__", (PyCFunction)EventQueue_reduce, METH_NOARGS, NULL},
    {"__setstate__", (PyCFunction)EventQueue_setstate, METH_O, NULL},
    {NULL, NULL, 0, NULL},
};

static PySequenceMethods EventQueue_as_sequence = {
    .sq_length = (lenfunc)EventQueue_len,
};

static PyTypeObject EventQueueType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "plexus.sim._eventqueue.EventQueue",
    .tp_doc = "The event loop's priority queue by (time, sequence), compiled (see plexus/sim/engine.py).",
    .tp_basicsize = sizeof(EventQueue),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_dealloc = (destructor)EventQueue_dealloc,
    .tp_free = PyObject_GC_Del,
    .tp_traverse = (traverseproc)EventQueue_traverse,
    .tp_clear = (inquiry)EventQueue_clear,
    .tp_methods = EventQueue_methods,
    .tp_as_sequence = &EventQueue_as_sequence,
};

static struct PyModuleDef eventqueue_module = {
    PyModuleDef_HEAD_INIT, "_eventqueue", "The event loop's priority queue, compiled (see plexus/sim/engine.py).",
    -1, NULL, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__eventqueue(void)
{
    if (PyType_Ready(&EventQueueType) < 0)
        return NULL;
    PyObject *module = PyModule_Create(&eventqueue_module);
    if (module == NULL)
        return NULL;
    Py_INCREF(&EventQueueType);
    if (PyModule_AddObject(module, "EventQueue", (PyObject *)&EventQueueType) < 0) {
        Py_DECREF(&EventQueueType);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
