/* What Linux offers for memory (sysmem.c): how much is available, and whether 2 MiB pages can be had. */
#ifndef MORRIS_SYSMEM_H
#define MORRIS_SYSMEM_H

long long memAvailableBytes(void);
int hugePagesEnabled(void);

#endif
