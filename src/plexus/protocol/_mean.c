/*
 * plexus.protocol._mean: the plain average of flat float32 models in one call.
 *
 * Why: a D-PSGD round at 1000 nodes averages 1000 times eleven small models; NumPy's stack + mean costs tens of
 * microseconds of Python-level dispatch each time, most of the averaging's cost. The result is the one
 * plexus.protocol.aggregation.average computes with NumPy, bit for bit: each element summed in float64 in model
 * order (NumPy reduces axis 0 of a C-contiguous stack sequentially), divided by the count in float64, rounded to
 * float32. Built with -ffp-contract=off like the flow table; the tests compare both on random models.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

static int is_float32_vector(const Py_buffer *view)
{
    const char *format = view->format;
    if (format == NULL || view->itemsize != 4 || view->ndim != 1)
        return 0;
    if (format[0] == '<' || format[0] == '=' || format[0] == '@')
        format++;
    return strcmp(format, "f") == 0;
}

/* mean_into(models, out) -> bool: out[:] = the models' average; False (nothing written) when a model or out is not
 * a C-contiguous float32 vector of out's length, so that the caller can use NumPy instead. */
static PyObject *mean_into(PyObject *module, PyObject *args)
{
    PyObject *models_obj, *out_obj;
    if (!PyArg_ParseTuple(args, "OO:mean_into", &models_obj, &out_obj))
        return NULL;
    PyObject *models = PySequence_Fast(models_obj, "mean_into takes a sequence of models");
    if (models == NULL)
        return NULL;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(models);
    Py_buffer out;
    if (count == 0 || PyObject_GetBuffer(out_obj, &out, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
        PyErr_Clear();
        Py_DECREF(models);
        Py_RETURN_FALSE;
    }
    Py_buffer *views = PyMem_Calloc(count, sizeof(Py_buffer));
    Py_ssize_t got = 0, length = out.ndim == 1 ? out.shape[0] : -1;
    double *sum = PyMem_Malloc((length > 0 ? length : 1) * sizeof(double));
    int usable = views != NULL && sum != NULL && is_float32_vector(&out);
    for (; usable && got < count; got++) {
        if (PyObject_GetBuffer(PySequence_Fast_GET_ITEM(models, got), &views[got],
                               PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
            PyErr_Clear();
            usable = 0;
            break;
        }
        usable = is_float32_vector(&views[got]) && views[got].shape[0] == length;
    }
    if (usable) {
        const float *first = views[0].buf;
        for (Py_ssize_t j = 0; j < length; j++)
            sum[j] = (double)first[j];
        for (Py_ssize_t i = 1; i < count; i++) {
            const float *model = views[i].buf;
            for (Py_ssize_t j = 0; j < length; j++)
                sum[j] += (double)model[j];
        }
        float *result = out.buf;
        double divisor = (double)count;
        for (Py_ssize_t j = 0; j < length; j++)
            result[j] = (float)(sum[j] / divisor);
    }
    for (Py_ssize_t i = 0; i < got; i++)
        PyBuffer_Release(&views[i]);
    PyBuffer_Release(&out);
    PyMem_Free(views);
    PyMem_Free(sum);
    Py_DECREF(models);
    if (views == NULL || sum == NULL)
        return PyErr_NoMemory();
    return PyBool_FromLong(usable);
}

static PyMethodDef mean_methods[] = {
    {"mean_into", mean_into, METH_VARARGS,
     "mean_into(models, out) -> bool: the average of float32 vectors into out (False: not such vectors)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef mean_module = {
    PyModuleDef_HEAD_INIT, "_mean", "The plain average of flat float32 models (see plexus/protocol/aggregation.py).",
    -1, mean_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__mean(void)
{
    return PyModule_Create(&mean_module);
}
