import Monitoring
import Trainer
import TrainerService

/// The trainer's Prometheus metrics (`train` and `trainer` with `--metrics-bind`): every name,
/// type and help text in one place; the README's table lists the same. The engine only calls
/// an observer, so neither `Trainer` nor `TrainerService` knows about HTTP.
struct TrainerMetrics {
    typealias Sample = MetricsRegistry.Sample
    let registry: MetricsRegistry

    /// Publishes the run's position now (a resumed run starts past 0) and every metrics
    /// window from then on.
    func follow(_ run: TrainingRun) {
        registry.set(
            position(step: run.trainer.step, tokens: run.trainer.tokens)
                + [Sample("trainer_tokens_budget", Double(run.trainer.training.totalTokens), help: "The run's --tokens budget.")])
        run.metricsObserver = publish
    }

    /// One metrics window, set at once so that a scrape never mixes two windows.
    func publish(_ metrics: TrainingMetrics) {
        let window = "of the latest metrics window (every --log-every steps)"
        registry.set(
            position(step: metrics.step, tokens: metrics.tokens) + [
                Sample("trainer_explained_variance", metrics.explainedVariance, help: "Explained variance \(window); 1 is a perfect reconstruction."),
                Sample("trainer_fvu", metrics.fractionUnexplained, help: "Fraction of variance unexplained \(window)."),
                Sample("trainer_l0", metrics.l0, help: "Mean active latents per token \(window)."),
                Sample("trainer_dead_fraction", metrics.deadFraction, help: "Fraction of latents that have not fired for --dead-tokens tokens."),
                Sample("trainer_loss", metrics.loss, help: "Mean training loss \(window)."),
                Sample("trainer_aux_loss", metrics.auxLoss, help: "Mean AuxK loss \(window)."),
                Sample("trainer_learning_rate", metrics.learningRate, help: "Learning rate of the latest step."),
                Sample("trainer_tokens_per_second", metrics.tokensPerSecond, help: "Training rate \(window)."),
            ])
    }

    private func position(step: Int, tokens: Int) -> [Sample] {
        [
            Sample("trainer_step", Double(step), help: "Optimiser steps taken (a resumed run continues its count)."),
            Sample("trainer_tokens_trained_total", Double(tokens), kind: .counter, help: "Tokens trained on (a resumed run continues its count)."),
        ]
    }

    /// The live trainer's receiving side, read afresh on every scrape (it changes while the
    /// training loop waits, e.g. for the first batch).
    func follow(_ source: LiveBatchSource) {
        let capacity = Double(source.configuration.queueRows)
        registry.refreshBeforeEachScrape { registry in
            let counters = source.snapshot
            let dropped = [("duplicate", counters.duplicates), ("rejected", counters.rejected), ("other_hook", counters.otherHooks)]
            registry.set(
                [
                    Sample(
                        "trainer_messages_received_total", Double(counters.messages), kind: .counter,
                        help: "Messages taken off the batch socket; each is accepted or dropped."),
                    Sample("trainer_batches_accepted_total", Double(counters.accepted), kind: .counter, help: "BATCH messages of --hook accepted (first copies)."),
                    Sample("trainer_tokens_received_total", Double(counters.rows), kind: .counter, help: "Rows (tokens) of the accepted batches."),
                    Sample("trainer_queued_tokens", Double(source.queuedRowCount), help: "Rows waiting between the receiver and the training loop."),
                    Sample(
                        "trainer_queue_capacity_tokens", capacity,
                        help: "Rows the queue holds before the receiver stops taking batches (--queue-tokens)."),
                ]
                    + dropped.map { reason, count in
                        Sample(
                            "trainer_batches_dropped_total", Double(count), kind: .counter,
                            help: "Messages dropped: duplicate (a copy already taken), rejected (malformed, corrupt, another width, non-finite), other_hook.",
                            labels: ["reason": reason])
                    })
        }
    }
}
