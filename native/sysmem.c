/*
 * What Linux offers for memory, read from /proc and /sys: packWeights packs only when the memory
 * available leaves room to spare, and reports huge pages only where transparent huge pages are on;
 * the read-bandwidth probe asks the same question of its own buffers.
 */
#include <stdio.h>
#include <string.h>
#include "sysmem.h"

/* MemAvailable from /proc/meminfo in bytes, or -1 where it cannot be read. */
long long memAvailableBytes(void) {
  FILE *f = fopen("/proc/meminfo", "r");
  if (!f) return -1;
  char line[256];
  long long kb = -1;
  while (fgets(line, sizeof line, f)) {
    if (sscanf(line, "MemAvailable: %lld kB", &kb) == 1) break;
  }
  fclose(f);
  return kb < 0 ? -1 : kb * 1024;
}

/* Transparent huge pages in "always" or "madvise" mode (the bracketed word in sysfs). */
int hugePagesEnabled(void) {
  FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
  if (!f) return 0;
  char buf[128] = {0};
  size_t got = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[got] = 0;
  return strstr(buf, "[always]") != NULL || strstr(buf, "[madvise]") != NULL;
}
