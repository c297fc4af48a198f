/* st_format.h — what the safetensors reader (st_reader.c) and writer
 * (st_writer.c) share: the layout, its limits and byte order.
 *
 * Layout of a file (all integers little-endian):
 *     [u64 N][N bytes of JSON header, space-padded][data section]
 *     header = { "__metadata__": {str: str, ...},            (optional)
 *                name: {"dtype": "F32"|"F64", "shape": [d0, ...],
 *                       "data_offsets": [begin, end]}, ... }
 * Offsets are relative to the start of the data section. */
#ifndef CHAINRULE_IO_ST_FORMAT_H
#define CHAINRULE_IO_ST_FORMAT_H

#include "chainrule/io.h"
#include "internal.h"

/* A header larger than this is taken as corruption, not as a real file. */
#define ST_MAX_HEADER ((uint64_t)100000000)
#define ST_META_KEY "__metadata__"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define ST_BIG_ENDIAN 1
#else
#define ST_BIG_ENDIAN 0
#endif

/* Reverse the bytes of each of n elements of size es in place (only needed
 * on big-endian hosts: file data is little-endian). */
static inline void cr__st_swap_elems(void *buf, int64_t n, size_t es) {
  if (!ST_BIG_ENDIAN)
    return;
  unsigned char *p = buf;
  for (int64_t i = 0; i < n; i++, p += es)
    for (size_t a = 0, b = es - 1; a < b; a++, b--) {
      unsigned char c = p[a];
      p[a] = p[b];
      p[b] = c;
    }
}

#endif
