/* where.h — a place in the source, so the report can say which line
 * computed each number ("computed by examples/bptt_teach/double_sum.c:120").
 * BT_HERE is the line it is written on, BT_NEXT the one after; bt_path shortens __FILE__ (which
 * meson gives relative to the build directory) to start at examples/. */
#ifndef BPTT_TEACH_WHERE_H
#define BPTT_TEACH_WHERE_H

#include <string.h>

typedef struct bt_where {
  const char *file;
  int line;
} bt_where;

#define BT_HERE ((bt_where){__FILE__, __LINE__})
#define BT_NEXT ((bt_where){__FILE__, __LINE__ + 1}) /* the line below */

static inline const char *bt_path(const char *file) {
  const char *p = file ? strstr(file, "examples/") : NULL;
  return p ? p : file ? file : "?";
}

#endif
