from deploysnake import checkpoint, job


def main(sm):
    # Training runs in a child process, at most the config's timeouts.train_s; the plugins are
    # imported there (under timeouts.import_s), and an error in them names its file from there.
    checkpoint.make_checkpoint_isolated(sm.params.settings, sm.output[0])


job.run(snakemake, main)
