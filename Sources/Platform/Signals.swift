import Glibc
import Synchronization

/// Counts SIGINT and SIGTERM so a long-running loop can drain instead of dying: the first
/// signal asks for a clean stop, a second one for a quick stop. The handler only bumps an
/// atomic counter (async-signal-safe); loops poll ``count``. Blocking calls such as
/// `zmq_poll` return early with EINTR, so the loop notices within one pass.
public enum ShutdownSignals {
    private static let received = Atomic<Int>(0)
    private static let lastSignal = Atomic<Int32>(0)

    /// Installs the handlers (idempotent).
    public static func install() {
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { signal in
            ShutdownSignals.received.add(1, ordering: .relaxed)
            ShutdownSignals.lastSignal.store(signal, ordering: .relaxed)
        }
        sigemptyset(&action.sa_mask)
        action.sa_flags = 0  // no SA_RESTART: blocking calls return EINTR so loops wake up
        sigaction(SIGINT, &action, nil)
        sigaction(SIGTERM, &action, nil)
        unblock()
    }

    /// Unblocks SIGINT and SIGTERM in the calling thread (and the threads it starts later): a
    /// parent may have started us with them blocked, since the mask survives exec (a test
    /// runner's worker threads block them, for one).
    public static func unblock() {
        var signals = sigset_t()
        sigemptyset(&signals)
        sigaddset(&signals, SIGINT)
        sigaddset(&signals, SIGTERM)
        pthread_sigmask(SIG_UNBLOCK, &signals, nil)
    }

    /// Signals received since ``install()``.
    public static var count: Int { received.load(ordering: .relaxed) }

    /// The last signal received (SIGINT or SIGTERM), or 0.
    public static var last: Int32 { lastSignal.load(ordering: .relaxed) }

    /// The conventional exit status of a process stopped by the last signal (128 + number).
    public static var exitStatus: Int32 { 128 + (last == 0 ? SIGTERM : last) }
}
