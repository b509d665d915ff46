#ifndef ACTCLUSTER_CPLATFORM_H
#define ACTCLUSTER_CPLATFORM_H

#include <stdint.h>

/// Gives thread `tid` (0: the calling thread) a scheduler slice of `nanoseconds`, keeping its
/// policy (SCHED_OTHER) and nice: the EEVDF custom slice of Linux 6.12 and later
/// (`sched_setattr` with `sched_runtime`). Returns 0, or the errno of the failed call.
int actcluster_set_scheduler_slice(int tid, uint64_t nanoseconds);

/// The calling thread's id (gettid), as /proc/self/task names it.
int actcluster_thread_id(void);

#endif
