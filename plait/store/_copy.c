/* The store's large copies, written around the caches.

A put copies the caller's buffers into the node's shared-memory arena, and nothing in this
process reads them back: readers map the block, mostly in other processes. An ordinary
store first reads each destination line into the cache (a read for ownership), so such a
copy moves three bytes across the memory bus per byte copied. A non-temporal (streaming)
store writes whole lines straight to memory: two bytes per byte copied.

glibc's memcpy streams only above its non-temporal threshold, three quarters of the L3 it
reads off the CPU: 240 MiB on the virtual CPUs plait is measured on, so a copy split over
four threads never streamed below 960 MiB. Here a copy of 256 MiB over two threads took 12 ms
streamed against 20-22 ms through memcpy.

Built when a C compiler is at hand (setup.py marks it optional); without it, or off x86-64,
plait.store.copying copies with numpy.
*/
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#define STREAMING 1
#else
#define STREAMING 0
#endif

/* memcpy, but with streaming stores for every whole 64-byte line of the destination. */
static void stream_copy(char *dst, const char *src, size_t n)
{
#if STREAMING
    size_t head = (64 - ((uintptr_t)dst & 63)) & 63;   /* to the next line boundary */
    if (head > n)
        head = n;
    memcpy(dst, src, head);
    dst += head;
    src += head;
    n -= head;
    size_t lines = n & ~(size_t)63;
    for (size_t i = 0; i < lines; i += 64) {
        __m128i a = _mm_loadu_si128((const __m128i *)(src + i));
        __m128i b = _mm_loadu_si128((const __m128i *)(src + i + 16));
        __m128i c = _mm_loadu_si128((const __m128i *)(src + i + 32));
        __m128i d = _mm_loadu_si128((const __m128i *)(src + i + 48));
        _mm_stream_si128((__m128i *)(dst + i), a);
        _mm_stream_si128((__m128i *)(dst + i + 16), b);
        _mm_stream_si128((__m128i *)(dst + i + 32), c);
        _mm_stream_si128((__m128i *)(dst + i + 48), d);
    }
    _mm_sfence();   /* the lines are in memory before anything this thread writes next */
    memcpy(dst + lines, src + lines, n - lines);
#else
    memcpy(dst, src, n);
#endif
}

PyDoc_STRVAR(copy_doc,
"copy(target, source)\n--\n\n"
"Copy all of source's bytes to the start of target (contiguous buffers, target\n"
"writable and at least as long), with streaming stores, the GIL released.");

static PyObject *copy(PyObject *module, PyObject *args)
{
    Py_buffer target, source;
    if (!PyArg_ParseTuple(args, "w*y*:copy", &target, &source))
        return NULL;
    if (target.len < source.len) {
        PyErr_Format(PyExc_ValueError, "copy: a target of %zd bytes is shorter than its "
                     "source of %zd", target.len, source.len);
        PyBuffer_Release(&target);
        PyBuffer_Release(&source);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    stream_copy(target.buf, source.buf, (size_t)source.len);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&target);
    PyBuffer_Release(&source);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"copy", copy, METH_VARARGS, copy_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_copy", "The store's large copies, with streaming stores.", -1,
    methods,
};

PyMODINIT_FUNC PyInit__copy(void)
{
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && PyModule_AddIntConstant(m, "STREAMING", STREAMING) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
