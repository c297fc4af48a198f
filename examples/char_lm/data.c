/* data.c — the text char-lm learns: its vocabulary (the bytes that occur,
 * in byte order), the text as ids, the 90/10 train/validation split, an
 * identity for checkpoints (FNV-1a over the bytes) and the batches. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "char_lm.h"

void cl_corpus_free(cl_corpus *c) {
  free(c->text);
  free(c->ids);
  c->text = NULL;
  c->ids = NULL;
}

/* Index c->text[0..n): vocabulary, ids, split, hash.  Takes c->text. */
static bool index_text(cl_corpus *c, size_t n, const char *name) {
  if (n == 0)
    return cl_fail("'%s' is empty: nothing to learn", name), false;
  c->n = (int64_t)n;
  bool seen[256] = {false};
  uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a 64 */
  for (size_t i = 0; i < n; i++) {
    seen[c->text[i]] = true;
    h = (h ^ c->text[i]) * 0x100000001b3ull;
  }
  c->hash = h;
  c->vocab = 0;
  for (int b = 0; b < 256; b++) {
    c->id_of[b] = -1;
    if (seen[b]) {
      c->id_of[b] = c->vocab;
      c->chars[c->vocab++] = (unsigned char)b;
    }
  }
  c->ids = cl_alloc(n, sizeof *c->ids, "the text as ids");
  if (!c->ids)
    return false;
  for (size_t i = 0; i < n; i++)
    c->ids[i] = c->id_of[c->text[i]];
  c->n_train = c->n * 9 / 10;
  return true;
}

bool cl_corpus_load(const char *path, cl_corpus *c) {
  memset(c, 0, sizeof *c);
  FILE *f = fopen(path, "rb");
  if (!f)
    return cl_fail("cannot read '%s': %s", path, strerror(errno)), false;
  size_t cap = 1 << 20, n = 0;
  c->text = cl_alloc(cap, 1, "the text");
  for (size_t r; c->text && (r = fread(c->text + n, 1, cap - n, f)) > 0;) {
    n += r;
    if (n == cap) {
      unsigned char *t = cap <= SIZE_MAX / 2 ? realloc(c->text, cap * 2) : NULL;
      if (!t) {
        cl_fail("out of memory reading '%s' (more than %zu bytes)", path, cap);
        free(c->text);
        c->text = NULL;
        break;
      }
      c->text = t;
      cap *= 2;
    }
  }
  bool err = ferror(f);
  fclose(f);
  if (!c->text)
    return false;
  if (err)
    return cl_fail("cannot read '%s': read error", path), false;
  return index_text(c, n, path);
}

bool cl_corpus_from_bytes(const void *bytes, size_t n, const char *name, cl_corpus *c) {
  memset(c, 0, sizeof *c);
  c->text = cl_alloc(n, 1, "the text");
  if (!c->text)
    return false;
  if (n)
    memcpy(c->text, bytes, n);
  return index_text(c, n, name);
}

void cl_vocab_hex(const cl_corpus *c, char *out) {
  for (int i = 0; i < c->vocab; i++)
    snprintf(out + 2 * i, 3, "%02x", c->chars[i]);
  out[2 * c->vocab] = '\0';
}

/* H = -sum_v p_v log2 p_v over the training text: the loss of the best
 * model that ignores context (bits per character). */
double cl_unigram_bits(const cl_corpus *c) {
  double count[256] = {0}, h = 0;
  for (int64_t i = 0; i < c->n_train; i++)
    count[c->ids[i]]++;
  for (int v = 0; v < c->vocab; v++)
    if (count[v] > 0) {
      double p = count[v] / (double)c->n_train;
      h -= p * log2(p);
    }
  return h;
}

void cl_slice(int64_t n, int rank, int size, int64_t *lo, int64_t *hi) {
  if (size <= 1) {
    *lo = 0;
    *hi = n;
    return;
  }
  *lo = rank * (n / size) + (rank < n % size ? rank : n % size);
  *hi = *lo + n / size + (rank < n % size);
}

bool cl_next_batch(const cl_corpus *c, int64_t T, int64_t B, int64_t lo, int64_t hi, bool tbptt,
                   cr_rng *rng, int64_t *stream_pos, int64_t *ids, int64_t *tgt) {
  const int64_t n = c->n_train, W = hi - lo; /* ids, tgt [T, W] */
  if (!tbptt) {
    for (int64_t b = 0; b < B; b++) {
      int64_t start = (int64_t)cr_rng_below(rng, (uint64_t)(n - T));
      for (int64_t s = 0; b >= lo && b < hi && s < T; s++) {
        ids[s * W + b - lo] = c->ids[start + s];
        tgt[s * W + b - lo] = c->ids[start + s + 1];
      }
    }
    return false;
  }
  /* stream b reads text[b*share + pos + s]; pos + T + 1 <= share keeps
   * every read inside its own share */
  int64_t share = n / B;
  bool wrapped = false;
  if (*stream_pos + T + 1 > share) {
    *stream_pos = 0;
    wrapped = true;
  }
  for (int64_t b = lo; b < hi; b++)
    for (int64_t s = 0; s < T; s++) {
      int64_t at = b * share + *stream_pos + s;
      ids[s * W + b - lo] = c->ids[at];
      tgt[s * W + b - lo] = c->ids[at + 1];
    }
  *stream_pos += T;
  return wrapped;
}
