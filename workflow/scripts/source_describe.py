from deploysnake import job, sources


def main(sm):
    # The first run of the user's file: in a child process, at most timeouts.first_run_s.
    sources.write_description_isolated(sm.wildcards.model, sm.params.settings, sm.output[0])


job.run(snakemake, main)
