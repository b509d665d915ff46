#ifndef ACTCLUSTER_CZEROMQ_SHIM_H
#define ACTCLUSTER_CZEROMQ_SHIM_H

#include <zmq.h>
#include <sys/epoll.h>

/* zmq_msg_t is opaque storage; callers keep it at a stable address (see ZeroMQ/Message.swift). */

#endif
