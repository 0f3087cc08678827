/* The shared cache's read path in native code: `Reader.get(key)` is a cache hit.
 *
 * It does what the Python reader it replaced did, in the same order, with the same guards
 * (service/cache/shared.py has the protocol, service/cache/layout.py the byte layout):
 *
 *   - no lock: a global seqlock word is read before and after the lookup, and a lookup that
 *     saw it odd or changed is retried, yielding the CPU, for a bounded time, then a miss;
 *   - every offset and length read from the region is bounds-checked against the region and
 *     every probe loop is bounded, so a torn read or garbage gives a miss, never a crash;
 *   - a hit sets the slot's CLOCK reference bit, the only thing a reader ever writes.
 *
 * Nothing of the layout is compiled in except the record header and the key hash, which it
 * shares with the writer (_record.h): every offset arrives from layout.py through the
 * constructor.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <sched.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "_record.h"

typedef struct {
    PyObject_HEAD
    Py_buffer region;
    int attached;
    const uint64_t *seq;
    const uint64_t *slot_ref;
    const uint32_t *slot_hash;
    uint8_t *ref_bits;
    const uint8_t *log;
    uint64_t mask;
    uint64_t budget;
    uint64_t max_probe;
    Py_ssize_t max_key_len;
    int64_t patience_ns;
} Reader;

enum outcome { FOUND, ABSENT, TORN };

static int64_t
now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* One probe for `key` between two reads of seq. FOUND sets *value to a new bytes object;
 * NULL with FOUND means the copy failed (MemoryError is set). */
static enum outcome
lookup_once(Reader *self, const uint8_t *key, Py_ssize_t key_len, uint32_t key_hash,
            PyObject **value)
{
    uint64_t seq = __atomic_load_n(self->seq, __ATOMIC_ACQUIRE);
    if (seq & 1) {
        return TORN;
    }
    uint64_t i = key_hash & self->mask;
    PyObject *found = NULL;
    int absent = 1;
    for (uint64_t probe = 0; probe < self->max_probe; probe++, i = (i + 1) & self->mask) {
        uint64_t ref = __atomic_load_n(&self->slot_ref[i], __ATOMIC_RELAXED);
        if (ref == 0) {
            break;
        }
        if (__atomic_load_n(&self->slot_hash[i], __ATOMIC_RELAXED) != key_hash) {
            continue;
        }
        uint64_t offset = ref - 1;
        if (offset > self->budget || self->budget - offset < sizeof(struct record_header)) {
            break;
        }
        struct record_header rec;
        memcpy(&rec, self->log + offset, sizeof rec);
        uint64_t needed = sizeof rec + (uint64_t)key_len + rec.val_len;
        if (rec.key_len == key_len && rec.hash == key_hash && needed <= rec.size
            && rec.size <= self->budget - offset) {
            const uint8_t *rec_key = self->log + offset + sizeof rec;
            if (memcmp(rec_key, key, (size_t)key_len) == 0) {
                if (!__atomic_load_n(&self->ref_bits[i], __ATOMIC_RELAXED)) {
                    __atomic_store_n(&self->ref_bits[i], 1, __ATOMIC_RELAXED);
                }
                found = PyBytes_FromStringAndSize((const char *)rec_key + key_len,
                                                  (Py_ssize_t)rec.val_len);
                absent = 0;
                break;
            }
        }
    }
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    if (__atomic_load_n(self->seq, __ATOMIC_RELAXED) != seq) {
        Py_XDECREF(found);
        if (found == NULL && !absent) {
            PyErr_Clear();
        }
        return TORN;
    }
    *value = found;
    return absent ? ABSENT : FOUND;
}

static PyObject *
Reader_get(Reader *self, PyObject *key)
{
    if (!PyUnicode_Check(key)) {
        PyErr_Format(PyExc_TypeError, "cache key must be str, not %.100s",
                     Py_TYPE(key)->tp_name);
        return NULL;
    }
    if (!self->attached) {
        PyErr_SetString(PyExc_ValueError, "the cache reader is closed");
        return NULL;
    }
    Py_ssize_t key_len = PyUnicode_GET_LENGTH(key);
    if (!PyUnicode_IS_ASCII(key) || key_len < 1 || key_len > self->max_key_len) {
        Py_RETURN_NONE;
    }
    const uint8_t *data = PyUnicode_1BYTE_DATA(key);
    uint32_t key_hash = crc32_of(data, (size_t)key_len);
    PyObject *value = NULL;
    enum outcome got = lookup_once(self, data, key_len, key_hash, &value);
    if (got == TORN) {
        /* A writer is mid-update: let it run (it may be a thread of this process, waiting
         * for the GIL) and look again, until the patience runs out. */
        int64_t give_up_at = now_ns() + self->patience_ns;
        while (got == TORN && now_ns() < give_up_at) {
            Py_BEGIN_ALLOW_THREADS
            sched_yield();
            Py_END_ALLOW_THREADS
            got = lookup_once(self, data, key_len, key_hash, &value);
        }
    }
    if (got == FOUND) {
        return value; /* NULL if the copy failed: the MemoryError propagates */
    }
    Py_RETURN_NONE;
}

static PyObject *
Reader_release(Reader *self, PyObject *Py_UNUSED(ignored))
{
    if (self->attached) {
        self->attached = 0;
        PyBuffer_Release(&self->region);
    }
    Py_RETURN_NONE;
}

static int
Reader_init(Reader *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"region", "seq_at", "slot_ref_at", "slot_hash_at",
                               "ref_bits_at", "log_at", "slot_count", "budget",
                               "max_probe", "max_key_len", "patience_s", NULL};
    PyObject *region;
    Py_ssize_t seq_at, slot_ref_at, slot_hash_at, ref_bits_at, log_at, slot_count, budget,
        max_probe, max_key_len;
    double patience_s;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O$nnnnnnnnnd", keywords, &region, &seq_at,
                                     &slot_ref_at, &slot_hash_at, &ref_bits_at, &log_at,
                                     &slot_count, &budget, &max_probe, &max_key_len,
                                     &patience_s)) {
        return -1;
    }
    if (self->attached) {
        PyErr_SetString(PyExc_RuntimeError, "a cache reader is initialised once");
        return -1;
    }
    if (slot_count < 1 || (slot_count & (slot_count - 1)) != 0 || max_probe < 1
        || max_key_len < 1 || max_key_len > 0xFFFF || !(patience_s >= 0.0 && patience_s < 60.0)) {
        PyErr_SetString(PyExc_ValueError,
                        "slot_count must be a power of two; max_probe, max_key_len and "
                        "patience_s within their ranges");
        return -1;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(region, &view, PyBUF_WRITABLE | PyBUF_SIMPLE) < 0) {
        return -1;
    }
    Py_ssize_t len = view.len;
    if (check_span("the seq word", seq_at, 8, 8, len) < 0
        || check_span("slot_ref", slot_ref_at, 8 * slot_count, 8, len) < 0
        || check_span("slot_hash", slot_hash_at, 4 * slot_count, 4, len) < 0
        || check_span("ref_bits", ref_bits_at, slot_count, 1, len) < 0
        || check_span("the value log", log_at, budget, 8, len) < 0) {
        PyBuffer_Release(&view);
        return -1;
    }
    const uint8_t *base = view.buf;
    self->region = view;
    self->attached = 1;
    self->seq = (const uint64_t *)(base + seq_at);
    self->slot_ref = (const uint64_t *)(base + slot_ref_at);
    self->slot_hash = (const uint32_t *)(base + slot_hash_at);
    self->ref_bits = (uint8_t *)base + ref_bits_at;
    self->log = base + log_at;
    self->mask = (uint64_t)slot_count - 1;
    self->budget = (uint64_t)budget;
    self->max_probe = (uint64_t)max_probe;
    self->max_key_len = max_key_len;
    self->patience_ns = (int64_t)(patience_s * 1e9);
    return 0;
}

static void
Reader_dealloc(Reader *self)
{
    if (self->attached) {
        PyBuffer_Release(&self->region);
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef Reader_methods[] = {
    {"get", (PyCFunction)Reader_get, METH_O,
     "get(key, /)\n--\n\nThe value stored for `key` (bytes), or None if it is absent, not "
     "an ASCII key of 1 to max_key_len characters, or not readable consistently within the "
     "patience."},
    {"release", (PyCFunction)Reader_release, METH_NOARGS,
     "release($self, /)\n--\n\nLet go of the region's buffer, so its mmap can be closed; "
     "get raises ValueError afterwards. Safe to call twice."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ReaderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "service.cache._reader.Reader",
    .tp_basicsize = sizeof(Reader),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Reader(region, *, seq_at, slot_ref_at, slot_hash_at, ref_bits_at, log_at, "
              "slot_count, budget, max_probe, max_key_len, patience_s)\n--\n\n"
              "The lock-free read path over one mapped cache region (a writable buffer); "
              "every offset is a byte offset into it, from service.cache.layout.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Reader_init,
    .tp_dealloc = (destructor)Reader_dealloc,
    .tp_methods = Reader_methods,
};

static PyObject *
crc32_py(PyObject *Py_UNUSED(module), PyObject *arg)
{
    Py_buffer data;
    if (PyObject_GetBuffer(arg, &data, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    uint32_t c = crc32_of(data.buf, (size_t)data.len);
    PyBuffer_Release(&data);
    return PyLong_FromUnsignedLong(c);
}

static PyMethodDef module_methods[] = {
    {"crc32", crc32_py, METH_O,
     "crc32(data, /)\n--\n\nThe key hash the reader computes: equal to zlib.crc32(data)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef reader_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "service.cache._reader",
    .m_doc = "The shared cache's lock-free read path (see _reader.c).",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__reader(void)
{
    crc_table_init();
    if (PyType_Ready(&ReaderType) < 0) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&reader_module);
    if (module == NULL) {
        return NULL;
    }
    if (PyModule_AddStringConstant(module, "RECORD_FORMAT", RECORD_FORMAT) < 0
        || PyModule_AddType(module, &ReaderType) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
