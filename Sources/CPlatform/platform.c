#define _GNU_SOURCE
#include "CPlatform.h"

#include <errno.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

// The kernel's struct sched_attr (glibc has no wrapper for sched_setattr before 2.41).
struct actcluster_sched_attr {
    uint32_t size;
    uint32_t sched_policy;
    uint64_t sched_flags;
    int32_t sched_nice;
    uint32_t sched_priority;
    uint64_t sched_runtime;
    uint64_t sched_deadline;
    uint64_t sched_period;
    uint32_t sched_util_min;
    uint32_t sched_util_max;
};

int actcluster_thread_id(void) { return (int)syscall(SYS_gettid); }

int actcluster_set_scheduler_slice(int tid, uint64_t nanoseconds) {
    struct actcluster_sched_attr attr;
    memset(&attr, 0, sizeof attr);
    // Read first: setattr sets the nice as well, and must keep it.
    if (syscall(SYS_sched_getattr, tid, &attr, sizeof attr, 0) != 0) return errno;
    attr.size = sizeof attr;
    attr.sched_flags = 0;
    attr.sched_runtime = nanoseconds;
    if (syscall(SYS_sched_setattr, tid, &attr, 0) != 0) return errno;
    return 0;
}
