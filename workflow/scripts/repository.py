from deploysnake import job, repository, tuning


def main(sm):
    w = sm.wildcards
    # A tuned format is served with the configuration its search chose.
    triton = tuning.chosen_triton(sm.input.tuned[0]) if sm.input.tuned else sm.params.triton
    repository.write_repository(
        w.model, sm.input.artifact, sm.input.io, triton, w.device, sm.params.flavour, sm.output[0]
    )


job.run(snakemake, main)
