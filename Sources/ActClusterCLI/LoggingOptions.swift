import ArgumentParser
import Logfmt
import Logging

/// Options shared by every long-running command.
struct LoggingOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Also append log lines to this file (logfmt, one event per line).", valueName: "file"))
    var logFile: String?

    @Option(help: "Lowest level to log: trace, debug, info, notice, warning, error or critical.")
    var logLevel: Logger.Level = .info

    /// Installs the logfmt handler for this process. Call once, from `run()`.
    func bootstrap(role: String) throws -> Logger {
        let output: StandardLogOutput
        do {
            output = try StandardLogOutput(filePath: logFile)
        } catch {
            throw CommandFailure(error.description)
        }
        let level = logLevel
        LoggingSystem.bootstrap { _ in LogfmtLogHandler(role: role, output: output, level: level) }
        return Logger(label: "actcluster.\(role)")
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
