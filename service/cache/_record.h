/* What the native reader (_reader.c) and writer (_writer.c) share of a cache region's bytes:
 * the record header, the key hash, and the check of each span a constructor is given.
 * Everything else of the layout (where the header words, slot arrays and log start) arrives
 * from service/cache/layout.py through each type's constructor; RECORD_FORMAT is exported by
 * both modules and checked against layout.RECORD when service/cache/shared.py imports them,
 * so a stale build refuses to load.
 */
#ifndef ORDER_CACHE_RECORD_H
#define ORDER_CACHE_RECORD_H

#include <Python.h>
#include <stdint.h>
#include <stddef.h>

#define RECORD_FORMAT "=IHII2x"
#define RECORD_ALIGN 16

/* One record header as layout.RECORD packs it (no padding between the fields). */
struct record_header {
    uint32_t size;
    uint16_t key_len;
    uint32_t val_len;
    uint32_t hash;
    uint8_t pad[2];
} __attribute__((packed));
_Static_assert(sizeof(struct record_header) == RECORD_ALIGN, "a record header is 16 bytes");

/* zlib.crc32 (the IEEE polynomial, reflected), table-driven. */
static uint32_t crc_table[256];

static void
crc_table_init(void)
{
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++) {
            c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        }
        crc_table[n] = c;
    }
}

/* zlib.crc32 of `data`: the hash a key is filed under. */
static uint32_t
crc32_of(const uint8_t *data, size_t len)
{
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < len; i++) {
        c = crc_table[(c ^ data[i]) & 0xFF] ^ (c >> 8);
    }
    return c ^ 0xFFFFFFFFu;
}

/* 0 if `size` bytes at `at`, aligned to `align`, lie inside a region of `region_len` bytes;
 * else -1 with ValueError set, naming `what`. */
static int
check_span(const char *what, Py_ssize_t at, Py_ssize_t size, Py_ssize_t align,
           Py_ssize_t region_len)
{
    if (at < 0 || size < 0 || at % align != 0 || at > region_len || size > region_len - at) {
        PyErr_Format(PyExc_ValueError,
                     "%s (%zd bytes at %zd, aligned to %zd) does not fit a region of %zd bytes",
                     what, size, at, align, region_len);
        return -1;
    }
    return 0;
}

#endif
