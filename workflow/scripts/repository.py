import json
from pathlib import Path

from deploysnake import job, repository


def main(sm):
    w = sm.wildcards
    # A tuned format is served with the configuration its search chose.
    chosen = json.loads(Path(sm.input.tuned[0]).read_text()) if sm.input.tuned else None
    triton = dict(chosen["triton"]) if chosen else sm.params.triton
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
    trial = chosen.get("trial") if chosen else None
    served = repository.served_settings(w.model, w.format, triton, w.device, trial)
    served.write(sm.output.settings)


job.run(snakemake, main)
