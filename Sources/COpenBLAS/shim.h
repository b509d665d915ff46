#ifndef ACTCLUSTER_COPENBLAS_SHIM_H
#define ACTCLUSTER_COPENBLAS_SHIM_H

/* Found through pkg-config "openblas" (Debian: /usr/include/x86_64-linux-gnu/openblas-pthread). */
#include <cblas.h>

#endif
