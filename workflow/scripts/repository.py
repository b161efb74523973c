from deploysnake import job, repository
from deploysnake.contracts import TunedConfiguration


def main(sm):
    w = sm.wildcards
    # A tuned format is served with the configuration its search chose.
    tuned = TunedConfiguration.read(sm.input.tuned[0]) if sm.input.tuned else None
    triton = tuned.triton if tuned else sm.params.triton
    repository.write_repository(
        w.model,
        sm.input.artifact,
        sm.input.io,
        triton,
        w.device,
        sm.params.flavour,
        sm.output.repository,
    )
    # Resolved once, here: the served stages read these, not the config or chosen.json.
    trial = tuned.trial if tuned else None
    served = repository.served_settings(w.model, w.format, triton, w.device, trial)
    served.write(sm.output.settings)


job.run(snakemake, main)
