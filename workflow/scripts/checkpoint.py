from deploysnake import checkpoint, job
from deploysnake.sources.description import load_settings


def main(sm):
    settings = sm.params.settings
    load_settings(settings)  # the plugins import here first: an error names its file at once
    # Training runs in a child process, at most the config's timeouts.train_s.
    checkpoint.make_checkpoint_isolated(settings, sm.output[0])


job.run(snakemake, main)
