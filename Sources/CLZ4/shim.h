#ifndef ACTCLUSTER_CLZ4_SHIM_H
#define ACTCLUSTER_CLZ4_SHIM_H

#include <lz4.h>
#include <lz4frame.h>

/* Macros the Swift importer cannot see. */
static inline int actcluster_lz4_compress_bound(int input_size) {
    return LZ4_COMPRESSBOUND(input_size);
}
static inline int actcluster_lz4_max_input_size(void) {
    return LZ4_MAX_INPUT_SIZE;
}
static inline unsigned actcluster_lz4f_version(void) {
    return LZ4F_VERSION;
}

#endif
