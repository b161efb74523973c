import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../../src")  # the package, also under --sdm conda
import tempfile

from deploysnake import job, server, tools, tuning
from deploysnake.repository import triton_model_name, write_repository


def main(sm):
    w = sm.wildcards
    triton = tuning.triton_settings(sm.params.triton, tuning.parse_trial(w.trial), w.device)
    with tempfile.TemporaryDirectory(prefix="deploysnake-trial-repo-") as repo:
        write_repository(w.model, sm.input.artifact, sm.input.io, triton, w.device, sm.params.flavour, repo)
        with server.from_settings(repo, triton, sm.log.server) as running:
            executable = tools.perf_analyzer(sm.params.perf["perf_analyzer"])
            tuning.measure_trial(executable, running, triton_model_name(w.model, w.format), sm.input.io, sm.params.perf, sm.params.settings, w.trial, sm.output[0], sm.input.data)


job.run(snakemake, main)
