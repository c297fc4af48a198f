/* version.c — the library's version, as built (compare with the headers'
 * CR_VERSION_* macros to detect a header/library mismatch). */
#include "chainrule/base.h"

const char *cr_version(void) { return CR_VERSION_STRING; }

int cr_version_number(void) { return CR_VERSION_NUMBER; }
