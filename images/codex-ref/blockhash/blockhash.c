/* SHA-256 of many buffers in one call, with the GIL released once for all of them.
 *
 * hashlib releases the GIL around each digest of 2 KiB or more; a thread hashing the 20 blocks
 * of a BlockExchange message one call at a time takes it back 20 times, and while the event
 * loop holds it each return is a forced GIL hand-over between cores. One call per message
 * hands over once (docs/performance.md). The digests come from OpenSSL's libcrypto, as
 * hashlib's do.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#define DIGEST_BYTES 32

/* libcrypto's one-shot SHA-256 (declared here: the OpenSSL headers are not needed to link). */
unsigned char *SHA256(const unsigned char *data, size_t length, unsigned char *digest);

static void release_views(Py_buffer *views, Py_ssize_t count) {
    for (Py_ssize_t i = 0; i < count; i++) {
        PyBuffer_Release(&views[i]);
    }
}

static PyObject *sha256_many(PyObject *module, PyObject *blocks) {
    PyObject *sequence = PySequence_Fast(blocks, "sha256_many() takes a sequence of buffers");
    if (sequence == NULL) {
        return NULL;
    }
    Py_ssize_t count = PySequence_Fast_GET_SIZE(sequence);
    Py_buffer *views = PyMem_Calloc(count > 0 ? count : 1, sizeof(Py_buffer));
    unsigned char *digests = PyMem_Malloc(count > 0 ? count * DIGEST_BYTES : 1);
    PyObject *result = NULL;
    Py_ssize_t held = 0;
    if (views == NULL || digests == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (; held < count; held++) {
        PyObject *item = PySequence_Fast_GET_ITEM(sequence, held);
        if (PyObject_GetBuffer(item, &views[held], PyBUF_SIMPLE) < 0) {
            goto done;
        }
    }
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < count; i++) {
        SHA256(views[i].buf, (size_t)views[i].len, digests + i * DIGEST_BYTES);
    }
    Py_END_ALLOW_THREADS
    result = PyList_New(count);
    if (result == NULL) {
        goto done;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *digest = PyBytes_FromStringAndSize((const char *)digests + i * DIGEST_BYTES, DIGEST_BYTES);
        if (digest == NULL) {
            Py_CLEAR(result);
            goto done;
        }
        PyList_SET_ITEM(result, i, digest);
    }
done:
    if (views != NULL) {
        release_views(views, held);
    }
    PyMem_Free(views);
    PyMem_Free(digests);
    Py_DECREF(sequence);
    return result;
}

static PyMethodDef methods[] = {
    {"sha256_many", sha256_many, METH_O,
     "sha256_many(blocks) -> list of 32-byte SHA-256 digests, one per buffer, computed with the "
     "GIL released once."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "blockhash", NULL, -1, methods};

PyMODINIT_FUNC PyInit_blockhash(void) { return PyModule_Create(&module); }
