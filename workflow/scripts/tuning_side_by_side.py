import json
import sys
from pathlib import Path

sys.path.insert(0, f"{snakemake.scriptdir}/../../src")  # the package, also under --sdm conda
from deploysnake import job, tuning


def main(sm):
    w, i, p = sm.wildcards, sm.input, sm.params
    chosen = json.loads(Path(i.chosen).read_text())
    trials = [t for t in (chosen["trial"], chosen["naive"]) if t]
    tuning.side_by_side(w.model, w.format, w.device, i.artifact, i.io, p.triton, p.flavour, p.perf, p.settings, trials, p.rounds, sm.output[0], i.data, sm.log.server)


job.run(snakemake, main)
