/*
 * plexus.sim._flowtable: the network model's flow table, compiled.
 *
 * Why it exists: in a D-PSGD run at 1000 nodes, every node's ten models share its uplink and their receivers'
 * downlinks, so nearly every completion changes someone's max-min share; in Python (lists for a few flows, NumPy
 * arrays for many) the table's bookkeeping and the progressive filling were most of the simulator's own time.
 *
 * What it must be: the Python tables of plexus/sim/network.py (_FewFlows, _ManyFlows and the switch between
 * them), operation for operation. Every floating-point operation happens in the same order on the same values
 * (sums accumulate in the order NumPy's bincount or Python's dict would add them; no fused multiply-add, hence
 * -ffp-contract=off), flows are kept in the same order (insertion order in "few" mode, ascending slot with the same
 * LIFO free list in "many" mode), so a simulation gives byte-identical results with or without this module. The
 * tests run both side by side and compare every rate, completion time and arrival bit for bit.
 *
 * Flows between nodes only: the pair links of region matrices (a third resource per flow) stay in Python.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <string.h>

#define SATURATED(load, capacity) ((load) >= (capacity) * (1 - 1e-9))

typedef struct {
    PyObject_HEAD
    Py_ssize_t endpoints;   /* E: up resource of node i is i, down resource is E + i */
    Py_ssize_t resources;   /* 2E */
    double *capacity;       /* per resource */
    int many;               /* mode: 0 few (insertion order), 1 many (slot order) */

    /* flows, by slot */
    Py_ssize_t slots;       /* allocated slots */
    long long *src, *dst;
    double *size, *remaining, *rate;
    PyObject **payload;
    Py_ssize_t count;
    Py_ssize_t *free_stack; /* LIFO of free slots (the order matters in many mode) */
    Py_ssize_t free_count;
    Py_ssize_t *order;      /* the flows' slots in the table's order: insertion (few), ascending (many) */

    /* few mode: the set of saturated resources; many mode: the per-resource flags */
    int saturated_known;
    char *saturated;        /* per resource */
    Py_ssize_t *saturated_list; /* few mode: members of the set (to clear it) */
    Py_ssize_t saturated_count;

    /* many mode bookkeeping */
    long long *users;       /* flows per resource */
    double *load;           /* rates summed per resource */
    /* resources that have carried a flow since the last full allocation: every other one has load 0 and is not
     * saturated, so a full allocation resets only these (NumPy recomputes every resource) */
    char *dirty;
    Py_ssize_t *dirty_list;
    Py_ssize_t dirty_count;
    Py_ssize_t *fresh;      /* slots added since the last allocation, in order */
    Py_ssize_t fresh_count, fresh_capacity;

    /* scratch, per resource */
    Py_ssize_t *local_id;   /* -1 when unused */
    long long *crossing;
    double *share, *spare, *used, *scratch;
    char *not_minimal, *touched;
    Py_ssize_t *touched_list;
    /* scratch, per flow (grown with slots) */
    Py_ssize_t scratch_flows;
    long long *flow_up, *flow_down;
    double *flow_rate, *flow_level;
    Py_ssize_t *flow_list;              /* the unfrozen flows of max_min_many */
    Py_ssize_t *local_up, *local_down;  /* max_min_small: each flow's two resources, numbered locally */
    char *flow_done;
    Py_ssize_t *frozen_flow;
    double *frozen_level;
    Py_ssize_t *members, *member_start, *member_count;
    char *alive;
} FlowTable;

static PyTypeObject FlowTableType;

/* ------------------------------------------------------------------------------------------- memory */
/* resize t->field to count items of type, or return -1 (with MemoryError) from the calling function */
#define GROW(t, field, type, count)                                  \
    do {                                                             \
        void *grown_ = grow_array((t)->field, (count), sizeof(type)); \
        if (grown_ == NULL) {                                        \
            return -1;                                               \
        }                                                            \
        (t)->field = grown_;                                         \
    } while (0)

static void *grow_array(void *array, Py_ssize_t count, size_t item)
{
    void *grown = PyMem_Realloc(array, (count > 0 ? count : 1) * item);
    if (grown == NULL)
        PyErr_NoMemory();
    return grown;
}

static int ensure_flow_scratch(FlowTable *t, Py_ssize_t flows)
{
    if (flows <= t->scratch_flows)
        return 0;
    Py_ssize_t n = flows * 2;
    GROW(t, flow_up, long long, n);
    GROW(t, flow_down, long long, n);
    GROW(t, flow_rate, double, n);
    GROW(t, flow_level, double, n);
    GROW(t, flow_list, Py_ssize_t, n);
    GROW(t, local_up, Py_ssize_t, n);
    GROW(t, local_down, Py_ssize_t, n);
    GROW(t, flow_done, char, n);
    GROW(t, frozen_flow, Py_ssize_t, 2 * n);
    GROW(t, frozen_level, double, 2 * n);
    GROW(t, members, Py_ssize_t, 2 * n);
    GROW(t, member_start, Py_ssize_t, 2 * n);
    GROW(t, member_count, Py_ssize_t, 2 * n);
    GROW(t, alive, char, 2 * n);
    t->scratch_flows = n;
    return 0;
}

/* Resize the per-slot arrays to `slots`, clearing the slots from `first` on (not yet in use). */
static int resize_slots(FlowTable *t, Py_ssize_t first, Py_ssize_t slots)
{
    GROW(t, src, long long, slots);
    GROW(t, dst, long long, slots);
    GROW(t, size, double, slots);
    GROW(t, remaining, double, slots);
    GROW(t, rate, double, slots);
    GROW(t, payload, PyObject *, slots);
    GROW(t, free_stack, Py_ssize_t, slots);
    GROW(t, order, Py_ssize_t, slots);
    for (Py_ssize_t i = first; i < slots; i++) {
        t->src[i] = t->dst[i] = 0;
        t->size[i] = t->remaining[i] = t->rate[i] = 0.0;
        t->payload[i] = NULL;
    }
    t->slots = slots;
    return ensure_flow_scratch(t, slots);
}

/* Empty storage of `slots` slots with the free stack [slots-1, ..., 0] (slot 0 taken first). */
static int reset_storage(FlowTable *t, Py_ssize_t slots)
{
    for (Py_ssize_t i = 0; i < t->slots; i++)
        Py_CLEAR(t->payload[i]);
    if (resize_slots(t, 0, slots) < 0)
        return -1;
    for (Py_ssize_t i = 0; i < slots; i++)
        t->free_stack[i] = slots - 1 - i;
    t->free_count = slots;
    t->count = 0;
    t->fresh_count = 0;
    return 0;
}

/* _ManyFlows._grow: double the slots; the new ones are taken lowest first. */
static int grow_storage(FlowTable *t)
{
    Py_ssize_t old = t->slots;
    if (resize_slots(t, old, 2 * old) < 0)
        return -1;
    for (Py_ssize_t i = 0; i < old; i++)
        t->free_stack[t->free_count++] = 2 * old - 1 - i;
    return 0;
}

static void mark_dirty(FlowTable *t, Py_ssize_t r)
{
    if (!t->dirty[r]) {
        t->dirty[r] = 1;
        t->dirty_list[t->dirty_count++] = r;
    }
}

static void clear_saturated(FlowTable *t)
{
    if (t->many) {
        for (Py_ssize_t i = 0; i < t->dirty_count; i++)
            t->saturated[t->dirty_list[i]] = 0;
    } else {
        for (Py_ssize_t i = 0; i < t->saturated_count; i++)
            t->saturated[t->saturated_list[i]] = 0;
    }
    t->saturated_count = 0;
    t->saturated_known = 0;
}

/* ------------------------------------------------------------------------------------------- max-min */
/* network._max_min_small: progressive filling over resources in order of first appearance (flow by flow, up then
 * down), freezing every local minimum at once; spare capacity is taken off flow by flow. */
static int max_min_small(FlowTable *t, Py_ssize_t flows, const long long *up, const long long *down,
                         const double *capacity, double *rates)
{
    if (flows == 1) {
        double a = capacity[up[0]], b = capacity[down[0]];
        rates[0] = b < a ? b : a;
        return 0;
    }
    Py_ssize_t *local = t->local_id;
    Py_ssize_t count = 0;
    /* number the resources in order of first appearance and count their flows */
    for (Py_ssize_t f = 0; f < flows; f++) {
        long long pair[2] = {up[f], down[f]};
        for (int k = 0; k < 2; k++) {
            long long r = pair[k];
            if (local[r] < 0) {
                local[r] = count;
                t->touched_list[count] = (Py_ssize_t)r;
                t->spare[count] = capacity[r];
                t->member_count[count] = 0;
                t->alive[count] = 1;
                count++;
            }
            t->member_count[local[r]]++;
        }
    }
    Py_ssize_t offset = 0;
    for (Py_ssize_t k = 0; k < count; k++) {
        t->member_start[k] = offset;
        offset += t->member_count[k];
        t->member_count[k] = 0;
    }
    Py_ssize_t *flow_up = t->local_up, *flow_down = t->local_down;
    for (Py_ssize_t f = 0; f < flows; f++) {
        Py_ssize_t a = local[up[f]], b = local[down[f]];
        flow_up[f] = a;
        flow_down[f] = b;
        t->members[t->member_start[a] + t->member_count[a]++] = f;
        t->members[t->member_start[b] + t->member_count[b]++] = f;
        t->flow_done[f] = 0;
        rates[f] = 0.0;
    }
    for (Py_ssize_t k = 0; k < count; k++)
        local[t->touched_list[k]] = -1;
    Py_ssize_t alive = count;
    double *share = t->share; /* by local id here */
    while (alive > 0) {
        for (Py_ssize_t k = 0; k < count; k++)
            if (t->alive[k])
                share[k] = t->spare[k] / (double)t->member_count[k];
        Py_ssize_t frozen = 0;
        for (Py_ssize_t k = 0; k < count; k++) {
            if (!t->alive[k])
                continue;
            double level = share[k];
            int minimal = 1;
            Py_ssize_t *member = t->members + t->member_start[k];
            for (Py_ssize_t m = 0; m < t->member_count[k]; m++) {
                Py_ssize_t f = member[m];
                Py_ssize_t other = flow_up[f] == k ? flow_down[f] : flow_up[f];
                if (share[other] < level) {
                    minimal = 0;
                    break;
                }
            }
            if (minimal) {
                for (Py_ssize_t m = 0; m < t->member_count[k]; m++) {
                    t->frozen_flow[frozen] = member[m];
                    t->frozen_level[frozen] = level;
                    frozen++;
                }
            }
        }
        if (frozen == 0) {
            PyErr_SetString(PyExc_RuntimeError, "max-min allocation made no progress (NaN capacity?)");
            return -1;
        }
        for (Py_ssize_t i = 0; i < frozen; i++) {
            Py_ssize_t f = t->frozen_flow[i];
            double level = t->frozen_level[i];
            if (t->flow_done[f])
                continue;
            t->flow_done[f] = 1;
            rates[f] = level;
            Py_ssize_t ends[2] = {flow_up[f], flow_down[f]};
            for (int e = 0; e < 2; e++) {
                Py_ssize_t k = ends[e];
                if (level != Py_HUGE_VAL) {
                    double left = t->spare[k] - level;
                    t->spare[k] = 0.0 > left ? 0.0 : left;
                }
                Py_ssize_t *member = t->members + t->member_start[k];
                Py_ssize_t n = t->member_count[k];
                for (Py_ssize_t m = 0; m < n; m++) {
                    if (member[m] == f) {
                        memmove(member + m, member + m + 1, (n - m - 1) * sizeof(Py_ssize_t));
                        break;
                    }
                }
                t->member_count[k] = n - 1;
                if (n - 1 == 0) {
                    t->alive[k] = 0;
                    alive--;
                }
            }
        }
    }
    return 0;
}

/* network._max_min_vectorised: the same filling, in the order NumPy computes it (shares from this step's spare
 * capacity; the frozen flows' rates summed per resource in flow order, then taken off at once). Each step visits
 * only the resources of the flows not yet frozen: the others' spare capacity is never read again. */
static int max_min_many(FlowTable *t, Py_ssize_t flows, const long long *up, const long long *down,
                        const double *capacity, double *rates)
{
    char *seen = t->touched;
    Py_ssize_t *live = t->touched_list;
    for (Py_ssize_t f = 0; f < flows; f++) {
        t->spare[up[f]] = capacity[up[f]];
        t->spare[down[f]] = capacity[down[f]];
        rates[f] = 0.0;
    }
    Py_ssize_t *unfrozen = t->flow_list;
    Py_ssize_t left = flows;
    for (Py_ssize_t f = 0; f < flows; f++)
        unfrozen[f] = f;
    int status = 0;
    while (left > 0) {
        Py_ssize_t count = 0;
        for (Py_ssize_t i = 0; i < left; i++) {
            Py_ssize_t f = unfrozen[i];
            long long ends[2] = {up[f], down[f]};
            for (int e = 0; e < 2; e++) {
                long long r = ends[e];
                if (!seen[r]) {
                    seen[r] = 1;
                    live[count++] = (Py_ssize_t)r;
                    t->crossing[r] = 0;
                    t->not_minimal[r] = 0;
                    t->used[r] = 0.0;
                }
                t->crossing[r]++;
            }
        }
        for (Py_ssize_t i = 0; i < count; i++) {
            Py_ssize_t r = live[i];
            t->share[r] = t->spare[r] / (double)t->crossing[r];
        }
        for (Py_ssize_t i = 0; i < left; i++) {
            Py_ssize_t f = unfrozen[i];
            double a = t->share[up[f]], b = t->share[down[f]];
            double level = b < a ? b : a;
            t->flow_level[i] = level;
            if (a > level)
                t->not_minimal[up[f]] = 1;
            if (b > level)
                t->not_minimal[down[f]] = 1;
        }
        Py_ssize_t kept = 0;
        int finite = 0;
        for (Py_ssize_t i = 0; i < left; i++) {
            Py_ssize_t f = unfrozen[i];
            double level = t->flow_level[i];
            int freeze = (t->share[up[f]] == level && !t->not_minimal[up[f]])
                         || (t->share[down[f]] == level && !t->not_minimal[down[f]]);
            if (freeze) {
                rates[f] = level;
                if (isfinite(level)) {
                    t->used[up[f]] += level;
                    t->used[down[f]] += level;
                    finite = 1;
                }
            } else {
                unfrozen[kept++] = f;
            }
        }
        for (Py_ssize_t i = 0; i < count; i++) {
            Py_ssize_t r = live[i];
            seen[r] = 0;
            if (finite) {
                double rest = t->spare[r] - t->used[r];
                t->spare[r] = rest < 0.0 ? 0.0 : rest;
            }
        }
        if (kept == left) {
            PyErr_SetString(PyExc_RuntimeError, "max-min allocation made no progress (NaN capacity?)");
            status = -1;
            break;
        }
        left = kept;
    }
    return status;
}

/* ------------------------------------------------------------------------------------------- methods */
static int parse_index(PyObject *object, Py_ssize_t limit, const char *what, long long *out)
{
    long long value = PyLong_AsLongLong(object);
    if (value == -1 && PyErr_Occurred())
        return -1;
    if (value < 0 || value >= limit) {
        PyErr_Format(PyExc_IndexError, "%s %lld outside the network's %zd endpoints", what, value, limit);
        return -1;
    }
    *out = value;
    return 0;
}

static int add_flow(FlowTable *t, long long src, long long dst, double size, double remaining, PyObject *payload)
{
    if (t->free_count == 0 && grow_storage(t) < 0)
        return -1;
    Py_ssize_t slot = t->free_stack[--t->free_count];
    t->src[slot] = src;
    t->dst[slot] = dst;
    t->size[slot] = size;
    t->remaining[slot] = remaining;
    t->rate[slot] = 0.0;
    Py_INCREF(payload);
    t->payload[slot] = payload;
    if (t->many) {
        if (t->fresh_count == t->fresh_capacity) {
            Py_ssize_t capacity = t->fresh_capacity ? 2 * t->fresh_capacity : 64;
            void *p = grow_array(t->fresh, capacity, sizeof(Py_ssize_t));
            if (p == NULL)
                return -1;
            t->fresh = p;
            t->fresh_capacity = capacity;
        }
        t->fresh[t->fresh_count++] = slot;
        t->users[src]++;
        t->users[dst + t->endpoints]++;
        mark_dirty(t, (Py_ssize_t)src);
        mark_dirty(t, (Py_ssize_t)(dst + t->endpoints));
        /* keep order ascending: the new slot goes before the first larger one */
        Py_ssize_t low = 0, high = t->count;
        while (low < high) {
            Py_ssize_t middle = (low + high) / 2;
            if (t->order[middle] < slot)
                low = middle + 1;
            else
                high = middle;
        }
        memmove(t->order + low + 1, t->order + low, (t->count - low) * sizeof(Py_ssize_t));
        t->order[low] = slot;
    } else {
        t->order[t->count] = slot;
        clear_saturated(t);
    }
    t->count++;
    return 0;
}

static PyObject *FlowTable_add(FlowTable *t, PyObject *args)
{
    PyObject *src_obj, *dst_obj, *payload;
    double size;
    long long src, dst;
    if (!PyArg_ParseTuple(args, "OOdO:add", &src_obj, &dst_obj, &size, &payload))
        return NULL;
    if (parse_index(src_obj, t->endpoints, "source", &src) < 0
        || parse_index(dst_obj, t->endpoints, "destination", &dst) < 0)
        return NULL;
    if (add_flow(t, src, dst, size, size, payload) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* Rebuild the table in the other mode, flows in the current table's order (the Python tables' drain + add). */
static int switch_mode(FlowTable *t, int many)
{
    Py_ssize_t n = t->count;
    long long *src = PyMem_Malloc((n + 1) * sizeof(long long)), *dst = PyMem_Malloc((n + 1) * sizeof(long long));
    double *size = PyMem_Malloc((n + 1) * sizeof(double)), *remaining = PyMem_Malloc((n + 1) * sizeof(double));
    PyObject **payload = PyMem_Malloc((n + 1) * sizeof(PyObject *));
    int status = -1;
    if (!src || !dst || !size || !remaining || !payload) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t s = t->order[i];
        src[i] = t->src[s];
        dst[i] = t->dst[s];
        size[i] = t->size[s];
        remaining[i] = t->remaining[s];
        payload[i] = t->payload[s];
        Py_INCREF(payload[i]);
    }
    clear_saturated(t);
    t->many = many;
    if (reset_storage(t, 64) < 0)
        goto release;
    if (many) {
        memset(t->users, 0, t->resources * sizeof(long long));
        memset(t->load, 0, t->resources * sizeof(double));
        memset(t->dirty, 0, t->resources);
        t->dirty_count = 0;
    }
    status = 0;
    for (Py_ssize_t i = 0; i < n && status == 0; i++)
        status = add_flow(t, src[i], dst[i], size[i], remaining[i], payload[i]);
release:
    for (Py_ssize_t i = 0; i < n; i++)
        Py_DECREF(payload[i]);
done:
    PyMem_Free(src);
    PyMem_Free(dst);
    PyMem_Free(size);
    PyMem_Free(remaining);
    PyMem_Free(payload);
    return status;
}

static PyObject *FlowTable_to_many(FlowTable *t, PyObject *Py_UNUSED(ignored))
{
    if (switch_mode(t, 1) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *FlowTable_to_few(FlowTable *t, PyObject *Py_UNUSED(ignored))
{
    if (switch_mode(t, 0) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *FlowTable_advance(FlowTable *t, PyObject *arg)
{
    double elapsed = PyFloat_AsDouble(arg);
    if (elapsed == -1.0 && PyErr_Occurred())
        return NULL;
    for (Py_ssize_t i = 0; i < t->count; i++) {
        Py_ssize_t s = t->order[i];
        t->remaining[s] -= t->rate[s] * elapsed;
    }
    Py_RETURN_NONE;
}

static PyObject *finished_row(long long src, long long dst, double size, PyObject *payload)
{
    PyObject *row = PyTuple_New(4);
    if (row == NULL)
        return NULL;
    PyObject *a = PyLong_FromLongLong(src), *b = PyLong_FromLongLong(dst), *c = PyFloat_FromDouble(size);
    if (!a || !b || !c) {
        Py_XDECREF(a);
        Py_XDECREF(b);
        Py_XDECREF(c);
        Py_DECREF(row);
        return NULL;
    }
    PyTuple_SET_ITEM(row, 0, a);
    PyTuple_SET_ITEM(row, 1, b);
    PyTuple_SET_ITEM(row, 2, c);
    PyTuple_SET_ITEM(row, 3, payload); /* steals the table's reference */
    return row;
}

static PyObject *FlowTable_pop_finished(FlowTable *t, PyObject *Py_UNUSED(ignored))
{
    PyObject *finished = PyList_New(0);
    if (finished == NULL)
        return NULL;
    Py_ssize_t n = t->count, kept = 0; /* order is compacted in place: slot i is read before place i is written */
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t s = t->order[i];
        double size = t->size[s], tolerance = size * 1e-9;
        if (1e-6 > tolerance)
            tolerance = 1e-6;
        if (!(t->remaining[s] <= tolerance)) {
            t->order[kept++] = s;
            continue;
        }
        PyObject *row = finished_row(t->src[s], t->dst[s], size, t->payload[s]);
        if (row == NULL || PyList_Append(finished, row) < 0) {
            Py_XDECREF(row);
            Py_DECREF(finished);
            return NULL; /* unreachable in practice (out of memory); the table is left inconsistent */
        }
        Py_DECREF(row);
        t->payload[s] = NULL;
        t->free_stack[t->free_count++] = s;
        if (t->many) {
            long long up = t->src[s], down = t->dst[s] + t->endpoints;
            t->users[up]--;
            t->users[down]--;
            double rate = t->rate[s];
            if (rate != Py_HUGE_VAL) {
                t->load[up] -= rate;
                t->load[down] -= rate;
            }
        }
    }
    t->count -= PyList_GET_SIZE(finished);
    return finished;
}

static double soonest(FlowTable *t, double now)
{
    double best = Py_HUGE_VAL;
    int nan = 0;
    for (Py_ssize_t i = 0; i < t->count; i++) {
        Py_ssize_t s = t->order[i];
        double rate = t->rate[s];
        double seconds = (!t->many && rate == Py_HUGE_VAL) ? 0.0 : t->remaining[s] / rate;
        if (seconds <= 1e-12 || now + seconds <= now) {
            t->remaining[s] = 0.0;
            seconds = 0.0;
        }
        if (isnan(seconds))
            nan = 1; /* NumPy's min propagates NaN */
        if (seconds < best)
            best = seconds;
    }
    return nan && t->many ? Py_NAN : best;
}

static PyObject *FlowTable_soonest(FlowTable *t, PyObject *arg)
{
    double now = PyFloat_AsDouble(arg);
    if (now == -1.0 && PyErr_Occurred())
        return NULL;
    if (!t->many) {
        for (Py_ssize_t i = 0; i < t->count; i++)
            if (t->rate[t->order[i]] == 0.0) {
                PyErr_SetString(PyExc_ZeroDivisionError, "float division by zero");
                return NULL;
            }
    }
    return PyFloat_FromDouble(soonest(t, now));
}

static PyObject *FlowTable_reallocate(FlowTable *t, PyObject *arg)
{
    double now = PyFloat_AsDouble(arg);
    if (now == -1.0 && PyErr_Occurred())
        return NULL;
    Py_ssize_t n = t->count, *slots = t->order;
    for (Py_ssize_t i = 0; i < n; i++) {
        t->flow_up[i] = t->src[slots[i]];
        t->flow_down[i] = t->dst[slots[i]] + t->endpoints;
    }
    int status = n == 0 ? 0
                 : t->many ? max_min_many(t, n, t->flow_up, t->flow_down, t->capacity, t->flow_rate)
                           : max_min_small(t, n, t->flow_up, t->flow_down, t->capacity, t->flow_rate);
    if (status < 0)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++)
        t->rate[slots[i]] = t->flow_rate[i];
    clear_saturated(t);
    if (t->many) {
        t->fresh_count = 0;
        for (Py_ssize_t i = 0; i < t->dirty_count; i++) {
            Py_ssize_t r = t->dirty_list[i];
            t->load[r] = 0.0;
            t->dirty[r] = 0;
        }
        t->dirty_count = 0;
        for (Py_ssize_t i = 0; i < n; i++) {
            mark_dirty(t, (Py_ssize_t)t->flow_up[i]);
            mark_dirty(t, (Py_ssize_t)t->flow_down[i]);
        }
        for (Py_ssize_t i = 0; i < n; i++)
            t->load[t->flow_up[i]] += t->flow_rate[i];
        for (Py_ssize_t i = 0; i < n; i++)
            t->load[t->flow_down[i]] += t->flow_rate[i];
        for (Py_ssize_t i = 0; i < t->dirty_count; i++) {
            Py_ssize_t r = t->dirty_list[i];
            t->saturated[r] = SATURATED(t->load[r], t->capacity[r]);
        }
    } else {
        /* load per resource, summed flow by flow (up, then down), as the Python dict does */
        double *load = t->scratch;
        for (Py_ssize_t i = 0; i < n; i++) {
            long long ends[2] = {t->flow_up[i], t->flow_down[i]};
            for (int e = 0; e < 2; e++) {
                long long r = ends[e];
                if (!t->touched[r]) {
                    t->touched[r] = 1;
                    t->touched_list[t->saturated_count++] = (Py_ssize_t)r; /* reuse: resources seen */
                    load[r] = 0.0 + t->flow_rate[i];
                } else {
                    load[r] = load[r] + t->flow_rate[i];
                }
            }
        }
        Py_ssize_t seen = t->saturated_count;
        t->saturated_count = 0;
        for (Py_ssize_t i = 0; i < seen; i++) {
            Py_ssize_t r = t->touched_list[i];
            t->touched[r] = 0;
            if (SATURATED(load[r], t->capacity[r])) {
                t->saturated[r] = 1;
                t->saturated_list[t->saturated_count++] = r;
            }
        }
    }
    t->saturated_known = 1;
    return FlowTable_soonest(t, arg);
}

static int finished_resources(PyObject *finished, Py_ssize_t i, Py_ssize_t endpoints, long long *up, long long *down)
{
    PyObject *row = PySequence_Fast_GET_ITEM(finished, i);
    if (!PyTuple_Check(row) || PyTuple_GET_SIZE(row) < 2) {
        PyErr_SetString(PyExc_TypeError, "rates_still_fair takes the rows pop_finished returned");
        return -1;
    }
    if (parse_index(PyTuple_GET_ITEM(row, 0), endpoints, "source", up) < 0
        || parse_index(PyTuple_GET_ITEM(row, 1), endpoints, "destination", down) < 0)
        return -1;
    *down += endpoints;
    return 0;
}

static PyObject *FlowTable_rates_still_fair(FlowTable *t, PyObject *finished_obj)
{
    if (!t->saturated_known || (t->many && t->fresh_count > 0))
        Py_RETURN_FALSE;
    PyObject *finished = PySequence_Fast(finished_obj, "rates_still_fair takes a list");
    if (finished == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(finished);
    PyObject *answer = Py_True;
    for (Py_ssize_t i = 0; i < n && answer == Py_True; i++) {
        long long ends[2];
        if (finished_resources(finished, i, t->endpoints, &ends[0], &ends[1]) < 0) {
            Py_DECREF(finished);
            return NULL;
        }
        for (int e = 0; e < 2; e++) {
            long long r = ends[e];
            if (!t->saturated[r])
                continue;
            int used = 0;
            if (t->many) {
                used = t->users[r] > 0;
            } else {
                for (Py_ssize_t k = 0; k < t->count && !used; k++) {
                    Py_ssize_t s = t->order[k];
                    used = e == 0 ? t->src[s] == r : t->dst[s] + t->endpoints == r;
                }
            }
            if (used) {
                answer = Py_False;
                break;
            }
        }
    }
    Py_DECREF(finished);
    Py_INCREF(answer);
    return answer;
}

/* _ManyFlows.add_fresh: the new flows' max-min allocation of the capacity left on their links, when exact. */
static PyObject *FlowTable_add_fresh(FlowTable *t, PyObject *arg)
{
    double now = PyFloat_AsDouble(arg);
    if (now == -1.0 && PyErr_Occurred())
        return NULL;
    if (!t->many || t->fresh_count == 0 || !t->saturated_known)
        Py_RETURN_NONE;
    Py_ssize_t n = t->fresh_count;
    if (ensure_flow_scratch(t, n) < 0)
        return NULL;
    long long *up = t->flow_up, *down = t->flow_down;
    for (Py_ssize_t i = 0; i < n; i++) {
        up[i] = t->src[t->fresh[i]];
        down[i] = t->dst[t->fresh[i]] + t->endpoints;
    }
    /* the new flows' resources in the order of the Python dict (all up links, then all down links), with the
     * number of new flows on each: resource r's position in that order is kept in local_id while we work */
    Py_ssize_t *order = PyMem_Malloc((2 * n + 1) * sizeof(Py_ssize_t));
    long long *fresh_users = PyMem_Malloc((2 * n + 1) * sizeof(long long));
    double *added = PyMem_Malloc((2 * n + 1) * sizeof(double));
    char *shared = PyMem_Malloc(2 * n + 1);
    PyObject *result = NULL;
    if (!order || !fresh_users || !added || !shared) {
        PyErr_NoMemory();
        goto release;
    }
    Py_ssize_t count = 0;
    for (int side = 0; side < 2; side++) {
        for (Py_ssize_t i = 0; i < n; i++) {
            long long r = side == 0 ? up[i] : down[i];
            Py_ssize_t k = t->local_id[r];
            if (k < 0) {
                k = count++;
                t->local_id[r] = k;
                order[k] = (Py_ssize_t)r;
                fresh_users[k] = 0;
            }
            fresh_users[k]++;
        }
    }
    for (Py_ssize_t k = 0; k < count; k++)
        t->local_id[order[k]] = -1;
    int give_up = 0;
    for (Py_ssize_t k = 0; k < count; k++) {
        Py_ssize_t r = order[k];
        shared[k] = 0;
        if (t->users[r] > fresh_users[k]) { /* also carries flows in place */
            if (t->saturated[r]) {
                give_up = 1;
                break;
            }
            shared[k] = 1;
            t->scratch[r] = t->capacity[r] - t->load[r];
        } else {
            t->scratch[r] = t->capacity[r];
        }
    }
    if (give_up) {
        Py_INCREF(Py_None);
        result = Py_None;
        goto release;
    }
    if (max_min_small(t, n, up, down, t->scratch, t->flow_rate) < 0)
        goto release;
    for (Py_ssize_t k = 0; k < count; k++) {
        t->local_id[order[k]] = k;
        added[k] = 0.0;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        added[t->local_id[up[i]]] += t->flow_rate[i];
        added[t->local_id[down[i]]] += t->flow_rate[i];
    }
    for (Py_ssize_t k = 0; k < count; k++)
        t->local_id[order[k]] = -1;
    for (Py_ssize_t k = 0; k < count; k++) {
        Py_ssize_t r = order[k];
        if (shared[k] && SATURATED(t->load[r] + added[k], t->capacity[r])) {
            give_up = 1;
            break;
        }
    }
    if (give_up) {
        Py_INCREF(Py_None);
        result = Py_None;
        goto release;
    }
    for (Py_ssize_t i = 0; i < n; i++)
        t->rate[t->fresh[i]] = t->flow_rate[i];
    for (Py_ssize_t k = 0; k < count; k++) {
        Py_ssize_t r = order[k];
        if (t->users[r] == fresh_users[k])
            t->load[r] = added[k];
        else
            t->load[r] += added[k];
        t->saturated[r] = SATURATED(t->load[r], t->capacity[r]);
    }
    t->fresh_count = 0;
    result = PyFloat_FromDouble(soonest(t, now));
release:
    PyMem_Free(order);
    PyMem_Free(fresh_users);
    PyMem_Free(added);
    PyMem_Free(shared);
    return result;
}

static PyObject *FlowTable_remove(FlowTable *t, PyObject *matches)
{
    Py_ssize_t n = t->count;
    Py_ssize_t *slots = PyMem_Malloc((n + 1) * sizeof(Py_ssize_t)); /* a copy: the callback may run any code */
    char *chosen = PyMem_Malloc(n + 1);
    PyObject *removed = PyList_New(0);
    if (!slots || !chosen || !removed) {
        PyMem_Free(slots);
        PyMem_Free(chosen);
        Py_XDECREF(removed);
        return PyErr_NoMemory();
    }
    memcpy(slots, t->order, n * sizeof(Py_ssize_t));
    /* ask first (the callback may run any Python code), then take the chosen flows out */
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t s = slots[i];
        PyObject *payload = t->payload[s];
        Py_INCREF(payload);
        PyObject *answer = PyObject_CallFunction(matches, "LLO", t->src[s], t->dst[s], payload);
        Py_DECREF(payload);
        int truth = answer == NULL ? -1 : PyObject_IsTrue(answer);
        Py_XDECREF(answer);
        if (truth < 0) {
            PyMem_Free(slots);
            PyMem_Free(chosen);
            Py_DECREF(removed);
            return NULL;
        }
        chosen[i] = (char)truth;
    }
    Py_ssize_t kept = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t s = slots[i];
        if (!chosen[i]) {
            t->order[kept++] = s;
            continue;
        }
        PyObject *row = Py_BuildValue("(LdO)", t->src[s], t->remaining[s], t->payload[s]);
        if (row == NULL || PyList_Append(removed, row) < 0) {
            Py_XDECREF(row);
            PyMem_Free(slots);
            PyMem_Free(chosen);
            Py_DECREF(removed);
            return NULL;
        }
        Py_DECREF(row);
        Py_CLEAR(t->payload[s]);
        t->free_stack[t->free_count++] = s;
    }
    Py_ssize_t taken = PyList_GET_SIZE(removed);
    if (taken) {
        t->count -= taken;
        clear_saturated(t);
        if (t->many) {
            memset(t->users, 0, t->resources * sizeof(long long));
            for (Py_ssize_t i = 0; i < t->count; i++) {
                Py_ssize_t s = t->order[i];
                t->users[t->src[s]]++;
                t->users[t->dst[s] + t->endpoints]++;
            }
        }
    }
    PyMem_Free(slots);
    PyMem_Free(chosen);
    return removed;
}

/* ------------------------------------------------------------------------------------------- pickling */
static PyObject *doubles_to_list(const double *values, Py_ssize_t n)
{
    PyObject *list = PyList_New(n);
    if (list == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyFloat_FromDouble(values[i]);
        if (item == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, item);
    }
    return list;
}

static PyObject *FlowTable_reduce(FlowTable *t, PyObject *Py_UNUSED(ignored))
{
    /* the flows in the table's order, with their slots, and the bookkeeping that decides future operations */
    Py_ssize_t n = t->count;
    PyObject *flows = PyList_New(n);
    if (flows == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t s = t->order[i];
        PyObject *row = Py_BuildValue("(nLLdddO)", s, t->src[s], t->dst[s], t->size[s], t->remaining[s], t->rate[s],
                                      t->payload[s]);
        if (row == NULL) {
            Py_DECREF(flows);
            return NULL;
        }
        PyList_SET_ITEM(flows, i, row);
    }
    PyObject *free_list = PyList_New(t->free_count), *fresh = PyList_New(t->fresh_count);
    PyObject *saturated = PyBytes_FromStringAndSize(t->saturated, t->resources);
    PyObject *load = doubles_to_list(t->load, t->resources);
    PyObject *capacity = doubles_to_list(t->capacity, t->resources);
    PyObject *result = NULL;
    if (free_list && fresh && saturated && load && capacity) {
        for (Py_ssize_t i = 0; i < t->free_count; i++)
            PyList_SET_ITEM(free_list, i, PyLong_FromSsize_t(t->free_stack[i]));
        for (Py_ssize_t i = 0; i < t->fresh_count; i++)
            PyList_SET_ITEM(fresh, i, PyLong_FromSsize_t(t->fresh[i]));
        result = Py_BuildValue("(O(On)(inOOiOOO))", (PyObject *)Py_TYPE(t), capacity, t->endpoints, t->many,
                               t->slots, flows, free_list, t->saturated_known, saturated, load, fresh);
    }
    Py_DECREF(flows);
    Py_XDECREF(free_list);
    Py_XDECREF(fresh);
    Py_XDECREF(saturated);
    Py_XDECREF(load);
    Py_XDECREF(capacity);
    return result;
}

static PyObject *FlowTable_setstate(FlowTable *t, PyObject *state)
{
    int many, known;
    Py_ssize_t slots;
    PyObject *flows, *free_list, *saturated, *load, *fresh;
    if (!PyArg_ParseTuple(state, "inO!O!iO!O!O!:__setstate__", &many, &slots, &PyList_Type, &flows, &PyList_Type,
                          &free_list, &known, &PyBytes_Type, &saturated, &PyList_Type, &load, &PyList_Type, &fresh))
        return NULL;
    if (slots < 1 || PyBytes_GET_SIZE(saturated) != t->resources || PyList_GET_SIZE(load) != t->resources
        || PyList_GET_SIZE(free_list) > slots || PyList_GET_SIZE(flows) > slots) {
        PyErr_SetString(PyExc_ValueError, "flow table state does not fit the network");
        return NULL;
    }
    t->many = many;
    if (reset_storage(t, slots) < 0)
        return NULL;
    memset(t->users, 0, t->resources * sizeof(long long));
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(flows); i++) {
        Py_ssize_t s;
        long long src, dst;
        double size, remaining, rate;
        PyObject *payload;
        if (!PyArg_ParseTuple(PyList_GET_ITEM(flows, i), "nLLdddO", &s, &src, &dst, &size, &remaining, &rate,
                              &payload))
            return NULL;
        if (s < 0 || s >= slots || src < 0 || src >= t->endpoints || dst < 0 || dst >= t->endpoints) {
            PyErr_SetString(PyExc_ValueError, "flow table state does not fit the network");
            return NULL;
        }
        t->src[s] = src;
        t->dst[s] = dst;
        t->size[s] = size;
        t->remaining[s] = remaining;
        t->rate[s] = rate;
        Py_INCREF(payload);
        t->payload[s] = payload;
        t->order[i] = s;
        t->users[src]++;
        t->users[dst + t->endpoints]++;
    }
    t->count = PyList_GET_SIZE(flows);
    t->free_count = PyList_GET_SIZE(free_list);
    for (Py_ssize_t i = 0; i < t->free_count; i++) {
        t->free_stack[i] = PyLong_AsSsize_t(PyList_GET_ITEM(free_list, i));
        if (t->free_stack[i] == -1 && PyErr_Occurred())
            return NULL;
    }
    if (!many)
        memset(t->users, 0, t->resources * sizeof(long long));
    t->saturated_known = known;
    t->saturated_count = 0;
    memcpy(t->saturated, PyBytes_AS_STRING(saturated), t->resources);
    if (!many)
        for (Py_ssize_t r = 0; r < t->resources; r++)
            if (t->saturated[r])
                t->saturated_list[t->saturated_count++] = r;
    memset(t->dirty, 0, t->resources);
    t->dirty_count = 0;
    for (Py_ssize_t r = 0; r < t->resources; r++) {
        t->load[r] = PyFloat_AsDouble(PyList_GET_ITEM(load, r));
        if (t->load[r] == -1.0 && PyErr_Occurred())
            return NULL;
        if (many && (t->load[r] != 0.0 || signbit(t->load[r]) || t->saturated[r] || t->users[r] > 0))
            mark_dirty(t, r);
    }
    Py_ssize_t fresh_count = PyList_GET_SIZE(fresh);
    if (fresh_count > t->fresh_capacity) {
        void *p = grow_array(t->fresh, fresh_count, sizeof(Py_ssize_t));
        if (p == NULL)
            return NULL;
        t->fresh = p;
        t->fresh_capacity = fresh_count;
    }
    for (Py_ssize_t i = 0; i < fresh_count; i++) {
        t->fresh[i] = PyLong_AsSsize_t(PyList_GET_ITEM(fresh, i));
        if (t->fresh[i] == -1 && PyErr_Occurred())
            return NULL;
    }
    t->fresh_count = fresh_count;
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------------------------------- type */
static int FlowTable_init(FlowTable *t, PyObject *args, PyObject *kwds)
{
    static char *keywords[] = {"capacity", "endpoints", NULL};
    PyObject *capacity_obj;
    Py_ssize_t endpoints;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "On:FlowTable", keywords, &capacity_obj, &endpoints))
        return -1;
    PyObject *capacity = PySequence_Fast(capacity_obj, "capacity must be a sequence of floats");
    if (capacity == NULL)
        return -1;
    if (endpoints < 1 || PySequence_Fast_GET_SIZE(capacity) != 2 * endpoints) {
        Py_DECREF(capacity);
        PyErr_SetString(PyExc_ValueError, "capacity must hold 2 x endpoints values (uplinks, then downlinks)");
        return -1;
    }
    if (t->resources) {
        PyErr_SetString(PyExc_RuntimeError, "FlowTable initialised twice");
        Py_DECREF(capacity);
        return -1;
    }
    Py_ssize_t resources = 2 * endpoints;
    t->endpoints = endpoints;
    t->resources = resources;
#define ALLOC(field, type) do { t->field = PyMem_Calloc(resources, sizeof(type)); \
        if (t->field == NULL) { Py_DECREF(capacity); PyErr_NoMemory(); return -1; } } while (0)
    ALLOC(capacity, double);
    ALLOC(saturated, char);
    ALLOC(saturated_list, Py_ssize_t);
    ALLOC(users, long long);
    ALLOC(load, double);
    ALLOC(dirty, char);
    ALLOC(dirty_list, Py_ssize_t);
    ALLOC(local_id, Py_ssize_t);
    ALLOC(crossing, long long);
    ALLOC(share, double);
    ALLOC(spare, double);
    ALLOC(used, double);
    ALLOC(scratch, double);
    ALLOC(not_minimal, char);
    ALLOC(touched, char);
    ALLOC(touched_list, Py_ssize_t);
#undef ALLOC
    for (Py_ssize_t r = 0; r < resources; r++) {
        double value = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(capacity, r));
        if (value == -1.0 && PyErr_Occurred()) {
            Py_DECREF(capacity);
            return -1;
        }
        t->capacity[r] = value;
        t->local_id[r] = -1;
    }
    Py_DECREF(capacity);
    t->many = 0;
    return reset_storage(t, 64);
}

static int FlowTable_traverse(FlowTable *t, visitproc visit, void *arg)
{
    for (Py_ssize_t s = 0; s < t->slots; s++)
        Py_VISIT(t->payload[s]);
    return 0;
}

static int FlowTable_clear(FlowTable *t)
{
    for (Py_ssize_t s = 0; s < t->slots; s++)
        Py_CLEAR(t->payload[s]);
    return 0;
}

static void FlowTable_dealloc(FlowTable *t)
{
    PyObject_GC_UnTrack(t);
    FlowTable_clear(t);
    void *arrays[] = {t->capacity, t->src, t->dst, t->size, t->remaining, t->rate, t->payload,
                      t->free_stack, t->order, t->saturated, t->saturated_list, t->users, t->load, t->dirty, t->dirty_list, t->fresh,
                      t->local_id, t->crossing, t->share, t->spare, t->used, t->scratch, t->not_minimal, t->touched,
                      t->touched_list, t->flow_up, t->flow_down, t->flow_rate, t->flow_level, t->flow_list,
                      t->local_up, t->local_down, t->flow_done, t->frozen_flow, t->frozen_level, t->members, t->member_start,
                      t->member_count, t->alive};
    for (size_t i = 0; i < sizeof(arrays) / sizeof(arrays[0]); i++)
        PyMem_Free(arrays[i]);
    Py_TYPE(t)->tp_free((PyObject *)t);
}

static Py_ssize_t FlowTable_len(FlowTable *t)
{
    return t->count;
}

static PyObject *FlowTable_get_many(FlowTable *t, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(t->many);
}

static PyMethodDef FlowTable_methods[] = {
    {"add", (PyCFunction)FlowTable_add, METH_VARARGS, "add(src, dst, size, payload): a new flow, at rate 0."},
    {"advance", (PyCFunction)FlowTable_advance, METH_O, "advance(elapsed): carry every flow's bytes for that long."},
    {"pop_finished", (PyCFunction)FlowTable_pop_finished, METH_NOARGS,
     "pop_finished() -> [(src, dst, size, payload)]: take out the flows whose bytes are all carried."},
    {"soonest", (PyCFunction)FlowTable_soonest, METH_O, "soonest(now): seconds to the next completion."},
    {"reallocate", (PyCFunction)FlowTable_reallocate, METH_O,
     "reallocate(now): max-min fair rates for every flow; seconds to the next completion."},
    {"add_fresh", (PyCFunction)FlowTable_add_fresh, METH_O,
     "add_fresh(now): rates for the flows added since the last allocation when exact, else None."},
    {"rates_still_fair", (PyCFunction)FlowTable_rates_still_fair, METH_O,
     "rates_still_fair(finished): whether no finished flow freed a saturated link others use."},
    {"remove", (PyCFunction)FlowTable_remove, METH_O,
     "remove(matches) -> [(src, remaining, payload)] for the flows matches(src, dst, payload) selects."},
    {"to_many", (PyCFunction)FlowTable_to_many, METH_NOARGS, "switch to the many-flows mode (slot order)."},
    {"to_few", (PyCFunction)FlowTable_to_few, METH_NOARGS, "switch to the few-flows mode (insertion order)."},
    {"__reduce__", (PyCFunction)FlowTable_reduce, METH_NOARGS, NULL},
    {"__setstate__", (PyCFunction)FlowTable_setstate, METH_O, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef FlowTable_getset[] = {
    {"many", (getter)FlowTable_get_many, NULL, "whether the table is in its many-flows mode", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PySequenceMethods FlowTable_as_sequence = {
    .sq_length = (lenfunc)FlowTable_len,
};

static PyTypeObject FlowTableType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "plexus.sim._flowtable.FlowTable",
    .tp_doc = "The network model's flow table (see plexus/sim/network.py), compiled.",
    .tp_basicsize = sizeof(FlowTable),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)FlowTable_init,
    .tp_dealloc = (destructor)FlowTable_dealloc,
    .tp_free = PyObject_GC_Del,
    .tp_traverse = (traverseproc)FlowTable_traverse,
    .tp_clear = (inquiry)FlowTable_clear,
    .tp_methods = FlowTable_methods,
    .tp_getset = FlowTable_getset,
    .tp_as_sequence = &FlowTable_as_sequence,
};

static struct PyModuleDef flowtable_module = {
    PyModuleDef_HEAD_INIT, "_flowtable", "The network model's flow table, compiled (see plexus/sim/network.py).",
    -1, NULL, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__flowtable(void)
{
    if (PyType_Ready(&FlowTableType) < 0)
        return NULL;
    PyObject *module = PyModule_Create(&flowtable_module);
    if (module == NULL)
        return NULL;
    Py_INCREF(&FlowTableType);
    if (PyModule_AddObject(module, "FlowTable", (PyObject *)&FlowTableType) < 0) {
        Py_DECREF(&FlowTableType);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
