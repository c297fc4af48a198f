/* dates.c — the task: a date between 1950-01-01 and 2049-12-31 written as a
 * person might write it, to be translated into ISO 8601.
 *
 *   the third of march, nineteen ninety-one    -> 1991-03-03
 *   March 3rd 1991        3 mar 91             tuesday 3 march 1991
 *   1991, march the third march 3, 1991        03.03.1991
 *   Sun, 3 Mar 1991       the 3rd of March 1991
 *   sunday, the third of march 2047
 *
 * Years come as digits, as two digits (50-99 are 19xx, 00-49 20xx, so the
 * range makes them unambiguous) or in words ("nineteen oh" never occurs;
 * "two thousand and five", "two thousand five", "twenty twenty-one"); days
 * as numbers, numeric ordinals (3rd, 22nd) or ordinal words (twenty-second);
 * months as names, abbreviations or numbers.  The weekday, where written,
 * is the true one: redundant, the model learns to skip it.
 *
 * The held-out sentences are of held-out DATES: a hash of the day number
 * puts one date in ten aside, so a test date never appears in training in
 * any spelling. */
#include <stdio.h>
#include <string.h>

#include "seq2seq.h"

const char s2s_src_chars[] = " ,.-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
int s2s_src_vocab(void) { return (int)sizeof s2s_src_chars; /* the chars and padding (0) */ }

static const char *const months[12] = {"january",   "february", "march",    "april",
                                       "may",       "june",     "july",     "august",
                                       "september", "october",  "november", "december"};
static const char *const weekdays[7] = {"monday", "tuesday",  "wednesday", "thursday",
                                        "friday", "saturday", "sunday"};
static const char *const small[20] = {"zero",    "one",     "two",       "three",    "four",
                                      "five",    "six",     "seven",     "eight",    "nine",
                                      "ten",     "eleven",  "twelve",    "thirteen", "fourteen",
                                      "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"};
static const char *const tens[10] = {"",      "",      "twenty",  "thirty", "forty",
                                     "fifty", "sixty", "seventy", "eighty", "ninety"};
static const char *const small_ord[20] = {
    "",           "first",     "second",    "third",       "fourth",     "fifth",     "sixth",
    "seventh",    "eighth",    "ninth",     "tenth",       "eleventh",   "twelfth",   "thirteenth",
    "fourteenth", "fifteenth", "sixteenth", "seventeenth", "eighteenth", "nineteenth"};

enum { FIRST_YEAR = 1950, LAST_YEAR = 2049, N_FORMATS = 10 };

/* Days since 1970-01-01 of a civil date (H. Hinnant's days_from_civil):
 * shift the year to start in March, so February's length is the last
 * term, then count 146097-day eras of 400 years. */
static long days_from_civil(int y, int m, int d) {
  y -= m <= 2;
  const long era = (y >= 0 ? y : y - 399) / 400;
  const long yoe = y - era * 400;
  const long doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

/* ... and back. */
static void civil_from_days(long z, int *y, int *m, int *d) {
  z += 719468;
  const long era = (z >= 0 ? z : z - 146096) / 146097;
  const long doe = z - era * 146097;
  const long yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const long doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const long mp = (5 * doy + 2) / 153;
  *d = (int)(doy - (153 * mp + 2) / 5 + 1);
  *m = (int)(mp < 10 ? mp + 3 : mp - 9);
  *y = (int)(yoe + era * 400 + (*m <= 2));
}

/* One date in ten is held out: splitmix64's finaliser of the day number. */
static bool held_out(long day) {
  uint64_t z = (uint64_t)day + 0x9e3779b97f4a7c15u;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
  return (z ^ (z >> 31)) % 10 == 0;
}

/* 0..99 in words: "seven", "forty-two" */
static void number_words(char *out, size_t n, int v) {
  if (v < 20)
    snprintf(out, n, "%s", small[v]);
  else if (v % 10 == 0)
    snprintf(out, n, "%s", tens[v / 10]);
  else
    snprintf(out, n, "%s-%s", tens[v / 10], small[v % 10]);
}

/* 1..31 as an ordinal word: "third", "twentieth", "thirty-first" */
static void ordinal_words(char *out, size_t n, int v) {
  if (v < 20)
    snprintf(out, n, "%s", small_ord[v]);
  else if (v % 10 == 0)
    snprintf(out, n, "%.*sieth", (int)strlen(tens[v / 10]) - 1,
             tens[v / 10]); /* twenty -> twentieth */
  else
    snprintf(out, n, "%s-%s", tens[v / 10], small_ord[v % 10]);
}

/* 1..31 with its English suffix: 1st 2nd 3rd 4th ... 11th 12th 13th 21st */
static void ordinal_digits(char *out, size_t n, int v) {
  const char *suf = v % 100 / 10 == 1 ? "th"
                    : v % 10 == 1     ? "st"
                    : v % 10 == 2     ? "nd"
                    : v % 10 == 3     ? "rd"
                                      : "th";
  snprintf(out, n, "%d%s", v, suf);
}

/* A year of the range in words, in one of the ways people say it. */
static void year_words(char *out, size_t n, int y, cr_rng *rng) {
  char w[32];
  if (y < 2000) {
    number_words(w, sizeof w, y % 100);
    snprintf(out, n, "nineteen %s", w);
  } else if (y == 2000) {
    snprintf(out, n, "two thousand");
  } else {
    number_words(w, sizeof w, y - 2000);
    int way = (int)cr_rng_below(rng, y >= 2010 ? 3 : 2);
    snprintf(out, n,
             way == 0   ? "two thousand and %s"
             : way == 1 ? "two thousand %s"
                        : "twenty %s",
             w);
  }
}

static void capitalise(char *s) {
  if (*s >= 'a' && *s <= 'z')
    *s = (char)(*s - 'a' + 'A');
}

/* The sentence for y-m-d (weekday wd, 0 = Monday) in format f. */
static void write_date(char *out, size_t n, int f, int y, int m, int d, int wd, cr_rng *rng) {
  char month[16], mon[4], day_w[32], day_o[8], year_w[48], weekday[16];
  snprintf(month, sizeof month, "%s", months[m - 1]);
  snprintf(mon, sizeof mon, "%.3s", months[m - 1]);
  snprintf(weekday, sizeof weekday, "%s", weekdays[wd]);
  ordinal_words(day_w, sizeof day_w, d);
  ordinal_digits(day_o, sizeof day_o, d);
  year_words(year_w, sizeof year_w, y, rng);
  if (cr_rng_below(rng, 3) == 0) { /* now and then Capitalised names */
    capitalise(month);
    capitalise(mon);
    capitalise(weekday);
  }
  switch (f) {
  case 0: snprintf(out, n, "the %s of %s, %s", day_w, month, year_w); break;
  case 1: capitalise(month), snprintf(out, n, "%s %s %d", month, day_o, y); break;
  case 2: snprintf(out, n, "%d %s %02d", d, mon, y % 100); break;
  case 3: snprintf(out, n, "%s %d %s %d", weekday, d, month, y); break;
  case 4: snprintf(out, n, "%d, %s the %s", y, month, day_w); break;
  case 5: snprintf(out, n, "%s %d, %d", month, d, y); break;
  case 6: snprintf(out, n, "%02d.%02d.%d", d, m, y); break;
  case 7:
    capitalise(weekday), capitalise(mon);
    snprintf(out, n, "%.3s, %d %s %d", weekday, d, mon, y);
    break;
  case 8: snprintf(out, n, "the %s of %s %d", day_o, month, y); break;
  default: snprintf(out, n, "%s, the %s of %s %d", weekday, day_w, month, y); break;
  }
}

void s2s_example_draw(cr_rng *rng, s2s_split split, s2s_example *ex) {
  const long first = days_from_civil(FIRST_YEAR, 1, 1), last = days_from_civil(LAST_YEAR, 12, 31);
  long day;
  do
    day = first + (long)cr_rng_below(rng, (uint64_t)(last - first + 1));
  while (held_out(day) != (split == S2S_HELD_OUT));
  int y, m, d;
  civil_from_days(day, &y, &m, &d);
  const int wd = (int)(((day % 7) + 7 + 3) % 7); /* 1970-01-01 was a Thursday (3) */
  memset(ex, 0, sizeof *ex);
  ex->format = (int)cr_rng_below(rng, N_FORMATS);
  char text[4 * S2S_SRC_MAX]; /* the longest sentence has 61 characters */
  write_date(text, sizeof text, ex->format, y, m, d, wd, rng);
  ex->len = (int64_t)strlen(text);
  if (ex->len > S2S_SRC_MAX)
    ex->len = S2S_SRC_MAX;
  memcpy(ex->text, text, (size_t)ex->len);
  for (int64_t i = 0; i < ex->len; i++)
    ex->src[i] = strchr(s2s_src_chars, ex->text[i]) - s2s_src_chars + 1;
  snprintf(ex->iso, sizeof ex->iso, "%04d-%02d-%02d", y, m, d);
  for (int t = 0; t < S2S_TGT_LEN; t++)
    ex->tgt[t] = ex->iso[t] == '-' ? 10 : ex->iso[t] - '0';
}

char s2s_tgt_char(int64_t id) {
  return id >= 0 && id <= 9 ? (char)('0' + id) : id == 10 ? '-' : '?';
}
