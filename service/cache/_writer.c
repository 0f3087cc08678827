/* The shared cache's write path in native code: `Writer.put_run(items)` stores a run of
 * (key, value) pairs under one odd seqlock value.
 *
 * The caller (service/cache/shared.py) holds the writers' lock; service/cache/layout.py has
 * the byte layout and every offset arrives from it through the constructor.
 *
 * Index: open addressing with linear probing over a power-of-two slot table at least twice
 * the capacity. Deletion shifts later entries of the probe run back into the hole instead of
 * leaving tombstones, so runs never fill up with dead slots and readers can stop at the first
 * empty slot. A slot's reference bit moves with it.
 *
 * Log: a ring of records addressed by ever-growing head/tail positions (ring offset =
 * position % budget, so head - tail is the bytes in use). New records go at the head; if one
 * does not fit before the end of the ring, the rest of the ring becomes a padding record
 * (key_len 0). Overwriting a key only unindexes the old record, which stays in the ring as
 * dead bytes until the tail passes it.
 *
 * Eviction is CLOCK over the log (second-chance FIFO). While a new record lacks room (bytes,
 * or entries == capacity), look at the tail record: padding or dead (no slot points at its
 * offset) -> skip it; live with its reference bit set -> clear the bit and move it to the
 * head; live and unreferenced -> evict it. Moves are capped per put (max_second_chances)
 * because readers keep setting bits concurrently; past the cap the tail is evicted whatever
 * its bit, so making room always terminates.
 *
 * Runs: when every record of a run fits at the head without evicting or wrapping (a warm-up
 * into an empty region, most consumer batches), the records are copied one after another
 * and then indexed: the same bytes as putting them one by one, with less work.
 *
 * Every argument is checked before the seqlock goes odd, so nothing can fail half way but
 * corruption: a loop that would run longer than any consistent region allows, or a record
 * header that disagrees with the header words. Then put_run raises CorruptError and leaves
 * seq odd; the caller clears the region (`clear`) and makes seq even again. The reference
 * model of all of this, checked against this code byte for byte, is tests/cache_reference.py.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

#include "_record.h"

static PyObject *CorruptError;

enum { SEQ, HEAD, TAIL, LOG_USED, ENTRIES, LIVE_BYTES, EVICTIONS, WORD_COUNT };

typedef struct {
    PyObject_HEAD
    Py_buffer region;
    int attached;
    uint64_t *word[WORD_COUNT];
    uint64_t *slot_ref;
    uint32_t *slot_hash;
    uint8_t *ref_bits;
    uint8_t *log;
    uint8_t *index_start; /* slot_ref .. log: what `clear` zeroes */
    size_t index_len;
    uint64_t mask;
    uint64_t budget;
    uint64_t capacity;
    uint64_t max_second_chances;
    Py_ssize_t max_key_len;
} Writer;

/* One item of a run, checked and hashed before anything is written. */
typedef struct {
    const uint8_t *key;
    uint64_t key_len;
    uint32_t hash;
    Py_buffer value;
    uint64_t size; /* record bytes, padding included; above the budget: never fits */
} Item;

/* Header words and slots are single aligned words that readers load atomically. */
static inline uint64_t
get(const uint64_t *word)
{
    return __atomic_load_n(word, __ATOMIC_RELAXED);
}

static inline void
set(uint64_t *word, uint64_t value)
{
    __atomic_store_n(word, value, __ATOMIC_RELAXED);
}

#define W(self, name) ((self)->word[name])

static int
corrupt(const char *format, unsigned long long a, unsigned long long b)
{
    PyErr_Format(CorruptError, format, a, b);
    return -1;
}

static uint64_t
record_size(uint64_t key_len, uint64_t val_len)
{
    uint64_t raw = sizeof(struct record_header) + key_len + val_len;
    return (raw + RECORD_ALIGN - 1) / RECORD_ALIGN * RECORD_ALIGN;
}

/* The record header at ring offset `offset`, or NULL (CorruptError set) if it cannot be. */
static struct record_header *
record_at(Writer *self, uint64_t offset)
{
    if (offset > self->budget || self->budget - offset < sizeof(struct record_header)) {
        corrupt("a slot points at log offset %llu of %llu", offset, self->budget);
        return NULL;
    }
    return (struct record_header *)(self->log + offset);
}

/* ---- index ------------------------------------------------------------------------------ */

/* Slot holding `key`, -1 if none, -2 on corruption. */
static int64_t
find_slot(Writer *self, const uint8_t *key, uint64_t key_len, uint32_t hash)
{
    uint64_t i = hash & self->mask;
    for (uint64_t probe = 0; probe <= self->mask; probe++, i = (i + 1) & self->mask) {
        uint64_t ref = get(&self->slot_ref[i]);
        if (ref == 0) {
            return -1;
        }
        if (self->slot_hash[i] != hash) {
            continue;
        }
        struct record_header *rec = record_at(self, ref - 1);
        if (rec == NULL) {
            return -2;
        }
        if (rec->key_len == key_len && self->budget - (ref - 1) >= sizeof *rec + key_len
            && memcmp((uint8_t *)rec + sizeof *rec, key, key_len) == 0) {
            return (int64_t)i;
        }
    }
    corrupt("no empty slot among %llu (capacity %llu)", self->mask + 1, self->capacity);
    return -2;
}

/* Slot whose entry is the record at `offset`, -1 if that record is dead, -2 on corruption. */
static int64_t
slot_pointing_at(Writer *self, uint32_t hash, uint64_t offset)
{
    uint64_t i = hash & self->mask;
    for (uint64_t probe = 0; probe <= self->mask; probe++, i = (i + 1) & self->mask) {
        uint64_t ref = get(&self->slot_ref[i]);
        if (ref == 0) {
            return -1;
        }
        if (ref == offset + 1) {
            return (int64_t)i;
        }
    }
    corrupt("no empty slot among %llu (capacity %llu)", self->mask + 1, self->capacity);
    return -2;
}

/* The first empty slot of `hash`'s probe run, -2 on corruption. */
static int64_t
empty_slot(Writer *self, uint32_t hash)
{
    uint64_t i = hash & self->mask;
    for (uint64_t probe = 0; probe <= self->mask; probe++, i = (i + 1) & self->mask) {
        if (get(&self->slot_ref[i]) == 0) {
            return (int64_t)i;
        }
    }
    corrupt("no empty slot among %llu (capacity %llu)", self->mask + 1, self->capacity);
    return -2;
}

static void
fill_slot(Writer *self, uint64_t i, uint32_t hash, uint64_t offset)
{
    __atomic_store_n(&self->slot_hash[i], hash, __ATOMIC_RELAXED);
    __atomic_store_n(&self->ref_bits[i], 0, __ATOMIC_RELAXED);
    set(&self->slot_ref[i], offset + 1);
}

/* Backward-shift deletion: pull later entries of the probe run into the hole. */
static int
unindex(Writer *self, uint64_t hole)
{
    uint64_t mask = self->mask, j = hole;
    for (uint64_t probe = 0; probe <= mask; probe++) {
        j = (j + 1) & mask;
        uint64_t ref = get(&self->slot_ref[j]);
        if (ref == 0) {
            set(&self->slot_ref[hole], 0);
            __atomic_store_n(&self->ref_bits[hole], 0, __ATOMIC_RELAXED);
            return 0;
        }
        /* The entry at j may fill the hole unless its home slot lies cyclically in (hole, j]. */
        if (((j - self->slot_hash[j]) & mask) >= ((j - hole) & mask)) {
            set(&self->slot_ref[hole], ref);
            __atomic_store_n(&self->slot_hash[hole], self->slot_hash[j], __ATOMIC_RELAXED);
            __atomic_store_n(&self->ref_bits[hole], self->ref_bits[j], __ATOMIC_RELAXED);
            hole = j;
        }
    }
    return corrupt("no empty slot among %llu (capacity %llu)", mask + 1, self->capacity);
}

/* Remove a live entry that is being overwritten (not an eviction). */
static int
drop(Writer *self, uint64_t slot)
{
    struct record_header *rec = record_at(self, get(&self->slot_ref[slot]) - 1);
    if (rec == NULL) {
        return -1;
    }
    uint32_t size = rec->size;
    if (unindex(self, slot) < 0) {
        return -1;
    }
    set(W(self, ENTRIES), get(W(self, ENTRIES)) - 1);
    set(W(self, LIVE_BYTES), get(W(self, LIVE_BYTES)) - size);
    return 0;
}

/* Index a record at `offset` whose key may already have an entry (a run's records). */
static int
index_replacing(Writer *self, const Item *item, uint64_t offset)
{
    uint64_t i = item->hash & self->mask;
    for (uint64_t probe = 0; probe <= 2 * self->mask + 1; probe++) {
        uint64_t ref = get(&self->slot_ref[i]);
        if (ref == 0) {
            fill_slot(self, i, item->hash, offset);
            return 0;
        }
        if (self->slot_hash[i] == item->hash) {
            struct record_header *rec = record_at(self, ref - 1);
            if (rec == NULL) {
                return -1;
            }
            if (rec->key_len == item->key_len
                && self->budget - (ref - 1) >= sizeof *rec + item->key_len
                && memcmp((uint8_t *)rec + sizeof *rec, item->key, item->key_len) == 0) {
                if (drop(self, i) < 0) {
                    return -1;
                }
                i = item->hash & self->mask;
                continue;
            }
        }
        i = (i + 1) & self->mask;
    }
    return corrupt("no empty slot among %llu (capacity %llu)", self->mask + 1, self->capacity);
}

/* ---- value log -------------------------------------------------------------------------- */

/* Log bytes a record of `size` takes at the head, padding to the ring's end included. */
static uint64_t
span(Writer *self, uint64_t size)
{
    uint64_t gap = self->budget - get(W(self, HEAD)) % self->budget;
    return size <= gap ? size : gap + size;
}

/* Claim `size` bytes at the head, padding out the ring's end first if the record would not
 * fit before it, and return their ring offset. Room was made beforehand. */
static uint64_t
reserve(Writer *self, uint64_t size)
{
    uint64_t head = get(W(self, HEAD));
    uint64_t offset = head % self->budget;
    uint64_t gap = self->budget - offset;
    if (size > gap) {
        struct record_header padding = {.size = (uint32_t)gap};
        memcpy(self->log + offset, &padding, sizeof padding);
        head += gap;
        set(W(self, LOG_USED), get(W(self, LOG_USED)) + gap);
        offset = 0;
    }
    set(W(self, HEAD), head + size);
    set(W(self, LOG_USED), get(W(self, LOG_USED)) + size);
    return offset;
}

/* Free the tail record: skip it (padding or dead), evict it, or give it a second chance by
 * moving it to the head while *chances last. */
static int
reclaim_tail(Writer *self, uint64_t *chances)
{
    uint64_t tail = get(W(self, TAIL));
    uint64_t offset = tail % self->budget;
    uint64_t used = get(W(self, LOG_USED));
    if (self->budget - offset < sizeof(struct record_header)) {
        return corrupt("the tail at log offset %llu of %llu", offset, self->budget);
    }
    struct record_header rec;
    memcpy(&rec, self->log + offset, sizeof rec);
    if (rec.size < sizeof rec || rec.size % RECORD_ALIGN || rec.size > used
        || rec.size > self->budget - offset) {
        return corrupt("bad record length %llu at log offset %llu", rec.size, offset);
    }
    set(W(self, TAIL), tail + rec.size);
    set(W(self, LOG_USED), used - rec.size);
    if (rec.key_len == 0) {
        return 0; /* padding */
    }
    int64_t slot = slot_pointing_at(self, rec.hash, offset);
    if (slot == -2) {
        return -1;
    }
    if (slot == -1) {
        return 0; /* dead: overwritten, or evicted earlier */
    }
    if (*chances > 0 && __atomic_load_n(&self->ref_bits[slot], __ATOMIC_RELAXED)) {
        __atomic_store_n(&self->ref_bits[slot], 0, __ATOMIC_RELAXED);
        /* The only byte reserve() writes before the copy is a padding header at the old
         * head, which never lies inside the freed record; the copy itself may overlap it. */
        uint64_t moved_to = reserve(self, rec.size);
        memmove(self->log + moved_to, self->log + offset, rec.size);
        set(&self->slot_ref[slot], moved_to + 1);
        --*chances;
        return 0;
    }
    if (unindex(self, (uint64_t)slot) < 0) {
        return -1;
    }
    set(W(self, ENTRIES), get(W(self, ENTRIES)) - 1);
    set(W(self, LIVE_BYTES), get(W(self, LIVE_BYTES)) - rec.size);
    set(W(self, EVICTIONS), get(W(self, EVICTIONS)) + 1);
    return 0;
}

static int
make_room(Writer *self, uint64_t size)
{
    uint64_t chances = self->max_second_chances;
    /* Every pass frees a record of at least 16 bytes, and a second chance adds at most two
     * (the moved record and a padding record): a consistent ring is done well within this. */
    uint64_t passes = self->budget / RECORD_ALIGN + 2 * chances + 4;
    while (passes--) {
        uint64_t used = get(W(self, LOG_USED));
        if (used + span(self, size) <= self->budget && get(W(self, ENTRIES)) < self->capacity) {
            return 0;
        }
        if (used == 0) {
            if (get(W(self, ENTRIES))) {
                return corrupt("%llu entries in a log of %llu bytes in use", get(W(self, ENTRIES)),
                               used);
            }
            /* An empty ring may restart at offset 0, where any record up to the budget fits. */
            set(W(self, HEAD), 0);
            set(W(self, TAIL), 0);
            continue;
        }
        if (reclaim_tail(self, &chances) < 0) {
            return -1;
        }
    }
    return corrupt("no room made for %llu bytes in a log of %llu", size, self->budget);
}

static void
write_record(Writer *self, uint64_t offset, const Item *item)
{
    struct record_header header = {
        .size = (uint32_t)item->size,
        .key_len = (uint16_t)item->key_len,
        .val_len = (uint32_t)item->value.len,
        .hash = item->hash,
    };
    uint8_t *at = self->log + offset;
    uint64_t val_len = (uint64_t)item->value.len;
    memcpy(at, &header, sizeof header);
    memcpy(at + sizeof header, item->key, item->key_len);
    memcpy(at + sizeof header + item->key_len, item->value.buf, val_len);
    memset(at + sizeof header + item->key_len + val_len, 0,
           item->size - sizeof header - item->key_len - val_len);
}

/* Insert or overwrite one item: 1 stored, 0 never fits (any old entry removed), -1 corrupt. */
static int
put_one(Writer *self, const Item *item)
{
    int64_t slot = find_slot(self, item->key, item->key_len, item->hash);
    if (slot == -2 || (slot >= 0 && drop(self, (uint64_t)slot) < 0)) {
        return -1;
    }
    if (item->size > self->budget) {
        return 0;
    }
    if (make_room(self, item->size) < 0) {
        return -1;
    }
    uint64_t offset = reserve(self, item->size);
    write_record(self, offset, item);
    int64_t free_slot = empty_slot(self, item->hash);
    if (free_slot < 0) {
        return -1;
    }
    fill_slot(self, (uint64_t)free_slot, item->hash, offset);
    set(W(self, ENTRIES), get(W(self, ENTRIES)) + 1);
    set(W(self, LIVE_BYTES), get(W(self, LIVE_BYTES)) + item->size);
    return 1;
}

/* The whole run at the head if it fits there without evicting or wrapping: 1 done, 0 it does
 * not fit (nothing written), -1 corrupt. The counters go up before indexing: a key twice in
 * one run drops its first record, which must already count. */
static int
put_at_head(Writer *self, const Item *items, Py_ssize_t n)
{
    uint64_t total = 0;
    for (Py_ssize_t k = 0; k < n; k++) {
        if (items[k].size > self->budget) {
            return 0;
        }
        total += items[k].size;
    }
    uint64_t head = get(W(self, HEAD));
    uint64_t offset = head % self->budget;
    uint64_t used = get(W(self, LOG_USED));
    if (get(W(self, ENTRIES)) + (uint64_t)n > self->capacity || total > self->budget - used
        || total > self->budget - offset) {
        return 0;
    }
    uint64_t at = offset;
    for (Py_ssize_t k = 0; k < n; k++) {
        write_record(self, at, &items[k]);
        at += items[k].size;
    }
    set(W(self, HEAD), head + total);
    set(W(self, LOG_USED), used + total);
    set(W(self, ENTRIES), get(W(self, ENTRIES)) + (uint64_t)n);
    set(W(self, LIVE_BYTES), get(W(self, LIVE_BYTES)) + total);
    at = offset;
    for (Py_ssize_t k = 0; k < n; k++) {
        if (index_replacing(self, &items[k], at) < 0) {
            return -1;
        }
        at += items[k].size;
    }
    return 1;
}

/* ---- the Python type -------------------------------------------------------------------- */

static void
release_items(Item *items, Py_ssize_t n)
{
    for (Py_ssize_t k = 0; k < n; k++) {
        PyBuffer_Release(&items[k].value);
    }
    PyMem_Free(items);
}

/* Check and hash every item of `seq` (a list or tuple) into a new array; NULL on error. */
static Item *
gather_items(Writer *self, PyObject *seq, Py_ssize_t n)
{
    Item *items = PyMem_Calloc((size_t)(n > 0 ? n : 1), sizeof *items);
    if (items == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    for (Py_ssize_t k = 0; k < n; k++) {
        PyObject *pair = PySequence_Fast_GET_ITEM(seq, k);
        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2
            || !PyBytes_Check(PyTuple_GET_ITEM(pair, 0))) {
            PyErr_SetString(PyExc_TypeError, "put_run takes (key: bytes, value: buffer) pairs");
            release_items(items, k);
            return NULL;
        }
        PyObject *key = PyTuple_GET_ITEM(pair, 0);
        Py_ssize_t key_len = PyBytes_GET_SIZE(key);
        if (key_len < 1 || key_len > self->max_key_len) {
            PyErr_Format(PyExc_ValueError, "a cache key must be 1-%zd bytes, got %zd",
                         self->max_key_len, key_len);
            release_items(items, k);
            return NULL;
        }
        if (PyObject_GetBuffer(PyTuple_GET_ITEM(pair, 1), &items[k].value, PyBUF_SIMPLE) < 0) {
            release_items(items, k);
            return NULL;
        }
        items[k].key = (const uint8_t *)PyBytes_AS_STRING(key);
        items[k].key_len = (uint64_t)key_len;
        items[k].hash = crc32_of(items[k].key, (size_t)key_len);
        uint64_t val_len = (uint64_t)items[k].value.len;
        /* A record's length is a u32: a value that large can never fit either. */
        items[k].size = val_len > UINT32_MAX - 2 * RECORD_ALIGN - (uint64_t)key_len
                            ? UINT64_MAX
                            : record_size((uint64_t)key_len, val_len);
    }
    return items;
}

static PyObject *
Writer_put_run(Writer *self, PyObject *run)
{
    if (!self->attached) {
        PyErr_SetString(PyExc_ValueError, "the cache writer is closed");
        return NULL;
    }
    PyObject *seq = PySequence_Fast(run, "put_run takes a sequence of (key, value) pairs");
    if (seq == NULL) {
        return NULL;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    Item *items = gather_items(self, seq, n);
    if (items == NULL) {
        Py_DECREF(seq);
        return NULL;
    }
    uint64_t *seqlock = W(self, SEQ);
    __atomic_store_n(seqlock, get(seqlock) + 1, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    long stored = 0;
    int outcome = put_at_head(self, items, n);
    if (outcome == 1) {
        stored = (long)n;
    }
    for (Py_ssize_t k = 0; outcome == 0 && k < n; k++) {
        int one = put_one(self, &items[k]);
        if (one < 0) {
            outcome = -1;
        }
        stored += one > 0;
    }
    release_items(items, n);
    Py_DECREF(seq);
    if (outcome < 0) {
        return NULL; /* CorruptError, seq left odd for the caller's recovery */
    }
    __atomic_store_n(seqlock, get(seqlock) + 1, __ATOMIC_RELEASE);
    return PyLong_FromLong(stored);
}

static PyObject *
Writer_clear(Writer *self, PyObject *Py_UNUSED(ignored))
{
    if (!self->attached) {
        PyErr_SetString(PyExc_ValueError, "the cache writer is closed");
        return NULL;
    }
    memset(self->index_start, 0, self->index_len);
    set(W(self, HEAD), 0);
    set(W(self, TAIL), 0);
    set(W(self, LOG_USED), 0);
    set(W(self, ENTRIES), 0);
    set(W(self, LIVE_BYTES), 0);
    Py_RETURN_NONE;
}

static PyObject *
Writer_release(Writer *self, PyObject *Py_UNUSED(ignored))
{
    if (self->attached) {
        self->attached = 0;
        PyBuffer_Release(&self->region);
    }
    Py_RETURN_NONE;
}

static int
Writer_init(Writer *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"region",       "header_words", "slot_ref_at",
                               "slot_hash_at", "ref_bits_at",  "log_at",
                               "slot_count",   "budget",       "capacity",
                               "max_key_len",  "max_second_chances", NULL};
    PyObject *region, *header_words;
    Py_ssize_t slot_ref_at, slot_hash_at, ref_bits_at, log_at, slot_count, budget, capacity,
        max_key_len, max_second_chances;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O$O!nnnnnnnnn", keywords, &region,
                                     &PyTuple_Type, &header_words, &slot_ref_at, &slot_hash_at,
                                     &ref_bits_at, &log_at, &slot_count, &budget, &capacity,
                                     &max_key_len, &max_second_chances)) {
        return -1;
    }
    if (self->attached) {
        PyErr_SetString(PyExc_RuntimeError, "a cache writer is initialised once");
        return -1;
    }
    if (PyTuple_GET_SIZE(header_words) != WORD_COUNT) {
        PyErr_Format(PyExc_ValueError,
                     "header_words must be the word indexes of seq, head, tail, log_used, "
                     "entries, live_bytes and evictions (%d), got %zd",
                     WORD_COUNT, PyTuple_GET_SIZE(header_words));
        return -1;
    }
    if (slot_count < 1 || (slot_count & (slot_count - 1)) != 0 || capacity < 1
        || capacity >= slot_count || budget < (Py_ssize_t)RECORD_ALIGN
        || budget % RECORD_ALIGN != 0 || max_key_len < 1 || max_key_len > 0xFFFF
        || max_second_chances < 0) {
        PyErr_SetString(PyExc_ValueError,
                        "slot_count must be a power of two above capacity, budget a multiple "
                        "of 16; max_key_len and max_second_chances within their ranges");
        return -1;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(region, &view, PyBUF_WRITABLE | PyBUF_SIMPLE) < 0) {
        return -1;
    }
    Py_ssize_t len = view.len;
    uint8_t *base = view.buf;
    for (int w = 0; w < WORD_COUNT; w++) {
        Py_ssize_t index = PyLong_AsSsize_t(PyTuple_GET_ITEM(header_words, w));
        if ((index == -1 && PyErr_Occurred())
            || check_span("a header word", index * 8, 8, 8, slot_ref_at) < 0) {
            PyBuffer_Release(&view);
            return -1;
        }
        self->word[w] = (uint64_t *)(base + index * 8);
    }
    if (check_span("slot_ref", slot_ref_at, 8 * slot_count, 8, len) < 0
        || check_span("slot_hash", slot_hash_at, 4 * slot_count, 4, len) < 0
        || check_span("ref_bits", ref_bits_at, slot_count, 1, len) < 0
        || check_span("the value log", log_at, budget, 8, len) < 0
        || check_span("the index", slot_ref_at, log_at - slot_ref_at, 8, len) < 0) {
        PyBuffer_Release(&view);
        return -1;
    }
    self->region = view;
    self->attached = 1;
    self->slot_ref = (uint64_t *)(base + slot_ref_at);
    self->slot_hash = (uint32_t *)(base + slot_hash_at);
    self->ref_bits = base + ref_bits_at;
    self->log = base + log_at;
    self->index_start = base + slot_ref_at;
    self->index_len = (size_t)(log_at - slot_ref_at);
    self->mask = (uint64_t)slot_count - 1;
    self->budget = (uint64_t)budget;
    self->capacity = (uint64_t)capacity;
    self->max_key_len = max_key_len;
    self->max_second_chances = (uint64_t)max_second_chances;
    return 0;
}

static void
Writer_dealloc(Writer *self)
{
    if (self->attached) {
        PyBuffer_Release(&self->region);
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef Writer_methods[] = {
    {"put_run", (PyCFunction)Writer_put_run, METH_O,
     "put_run(run, /)\n--\n\nStore a sequence of (key: bytes, value: buffer) pairs, each "
     "overwriting any older value of its key, under one odd seq; the number stored (a value "
     "that can never fit is not, and its key's old value is dropped). The caller holds the "
     "writers' lock. CorruptError leaves seq odd: clear, then make it even."},
    {"clear", (PyCFunction)Writer_clear, METH_NOARGS,
     "clear($self, /)\n--\n\nEmpty the index and the log; evictions and the ready flag are "
     "kept, seq is not touched."},
    {"release", (PyCFunction)Writer_release, METH_NOARGS,
     "release($self, /)\n--\n\nLet go of the region's buffer, so its mmap can be closed. Safe "
     "to call twice."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject WriterType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "service.cache._writer.Writer",
    .tp_basicsize = sizeof(Writer),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Writer(region, *, header_words, slot_ref_at, slot_hash_at, ref_bits_at, log_at, "
              "slot_count, budget, capacity, max_key_len, max_second_chances)\n--\n\n"
              "The write path over one mapped cache region (a writable buffer); every offset "
              "is a byte offset into it, from service.cache.layout.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Writer_init,
    .tp_dealloc = (destructor)Writer_dealloc,
    .tp_methods = Writer_methods,
};

static struct PyModuleDef writer_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "service.cache._writer",
    .m_doc = "The shared cache's write path (see _writer.c).",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__writer(void)
{
    crc_table_init();
    if (PyType_Ready(&WriterType) < 0) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&writer_module);
    if (module == NULL) {
        return NULL;
    }
    CorruptError = PyErr_NewExceptionWithDoc(
        "service.cache._writer.CorruptError",
        "The log disagrees with its header: only a bug or a foreign write can cause it.", NULL,
        NULL);
    if (CorruptError == NULL || PyModule_AddObjectRef(module, "CorruptError", CorruptError) < 0
        || PyModule_AddStringConstant(module, "RECORD_FORMAT", RECORD_FORMAT) < 0
        || PyModule_AddType(module, &WriterType) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
