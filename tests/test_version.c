/* test_version.c — cr_version() and cr_version_number() of the shared
 * library (this program links libchainrule.so, not the static library)
 * against the meson project version and the CR_VERSION_* macros of the
 * generated chainrule/version.h. */
#include <stdio.h>
#include <string.h>

#include "chainrule.h"

static int failures;

static void check(int ok, const char *what) {
  printf("%s: %s\n", ok ? "ok" : "FAIL", what);
  if (!ok)
    failures++;
}

int main(void) {
  char expect[64];
  printf("cr_version() = \"%s\", cr_version_number() = %d; headers %s (%d), soversion %d\n",
         cr_version(), cr_version_number(), CR_VERSION_STRING, CR_VERSION_NUMBER, CR_SOVERSION);
  check(strcmp(cr_version(), CR_EXPECTED_VERSION) == 0,
        "cr_version() is the meson project version " CR_EXPECTED_VERSION);
  check(strcmp(CR_VERSION_STRING, CR_EXPECTED_VERSION) == 0,
        "CR_VERSION_STRING is the meson project version");
  snprintf(expect, sizeof expect, "%d.%d.%d", CR_VERSION_MAJOR, CR_VERSION_MINOR, CR_VERSION_PATCH);
  check(strcmp(cr_version(), expect) == 0, "cr_version() is CR_VERSION_MAJOR.MINOR.PATCH");
  check(cr_version_number() == CR_VERSION_NUMBER, "cr_version_number() == CR_VERSION_NUMBER");
  check(CR_VERSION_NUMBER ==
            CR_VERSION_MAJOR * 1000000 + CR_VERSION_MINOR * 1000 + CR_VERSION_PATCH,
        "CR_VERSION_NUMBER encodes MAJOR.MINOR.PATCH");
  check(CR_SOVERSION == CR_EXPECTED_SOVERSION, "CR_SOVERSION is meson's soversion");
  return failures ? 1 : 0;
}
