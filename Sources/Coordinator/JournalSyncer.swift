import ClusterProtocol
import Foundation
import Glibc
import Platform
import Synchronization

/// Runs journal commits (write and `fdatasync`) on a thread of its own, so that the loop goes
/// on receiving and handling messages while the disk works: a slow sync delays only the
/// replies that wait for it, not the whole coordinator. One commit at a time (the journal
/// allows no more). When a commit has finished it makes ``wakeDescriptor`` (a pipe's read
/// end) readable, so the loop's poll returns.
final class JournalSyncer: Sendable {
    /// Readable when a commit has finished; the loop polls it with its sockets.
    let wakeDescriptor: Int32
    private let signalDescriptor: Int32
    private let requests = DispatchSemaphore(value: 0)
    private let state = Mutex<State>(State())

    private struct State {
        var request: JournalCommit?
        var finished: (commit: JournalCommit, error: (any Error)?)?
        var stopping = false
    }

    init() throws {
        var ends: [Int32] = [-1, -1]
        guard pipe(&ends) == 0 else {
            throw CoordinatorError("cannot create a pipe for the journal thread: \(String(cString: strerror(errno))); raise the open-files limit")
        }
        for end in ends {
            _ = fcntl(end, F_SETFL, O_NONBLOCK)
            _ = fcntl(end, F_SETFD, FD_CLOEXEC)
        }
        wakeDescriptor = ends[0]
        signalDescriptor = ends[1]
        Thread { [self] in
            nameCurrentThread("journal-sync")
            work()
        }.start()
    }

    deinit {
        close(wakeDescriptor)
        close(signalDescriptor)
    }

    private func work() {
        while true {
            requests.wait()
            guard let commit = state.withLock({ $0.stopping ? nil : $0.request }) else { return }
            var failure: (any Error)?
            do { try commit.perform() } catch { failure = error }
            state.withLock {
                $0.request = nil
                $0.finished = (commit, failure)
                // Under the lock: whoever sees `finished` finds the byte in the pipe.
                var one: UInt8 = 1
                _ = write(signalDescriptor, &one, 1)
            }
        }
    }

    /// Starts writing `commit`; the previous one must have been taken with ``takeFinished()``.
    func submit(_ commit: JournalCommit) {
        state.withLock {
            precondition($0.request == nil && $0.finished == nil, "a journal commit is already in flight")
            $0.request = commit
        }
        requests.signal()
    }

    /// The commit that finished since the last call, with its error if it failed; nil while it runs.
    func takeFinished() -> (commit: JournalCommit, error: (any Error)?)? {
        // The lock first: the loop asks every pass, and a read of the pipe is a system call.
        guard let finished = state.withLock({ state in defer { state.finished = nil }; return state.finished }) else { return nil }
        // The one byte written for it.
        var bytes = (UInt64(0), UInt64(0))
        _ = read(wakeDescriptor, &bytes, 16)
        return finished
    }

    /// Waits for the commit in flight to finish.
    func waitFinished() -> (commit: JournalCommit, error: (any Error)?) {
        while true {
            if let finished = takeFinished() { return finished }
            var item = pollfd(fd: wakeDescriptor, events: Int16(POLLIN), revents: 0)
            _ = poll(&item, 1, 100)
        }
    }

    /// Ends the thread (a commit it is writing is finished first).
    func stop() {
        state.withLock { $0.stopping = true }
        requests.signal()
    }
}
