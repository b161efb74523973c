import json
from pathlib import Path

from deploysnake import accuracy, coldstart, job, provenance, server
from deploysnake.contracts import ServedSettings, Target
from deploysnake.frameworks import ModelSource
from deploysnake.plugins import validation_batches


def main(sm):
    w, settings, triton = sm.wildcards, sm.params.settings, sm.params.server
    source = ModelSource.of(settings, sm.input.checkpoint)
    # The served configuration's (a tuned one's too): max_batch_size 0 sends each batch whole.
    target, served = Target.of(w), ServedSettings.read(sm.input.served_settings)
    batches = validation_batches(source.recipe, source.params, sm.params.batch_size)
    # Started with no model: the cold start is measured first, then the model stays loaded.
    with server.from_settings(
        sm.input.repository, triton, sm.log.server, server.EXPLICIT
    ) as running:
        figures = coldstart.measure(
            running,
            target,
            Path(sm.input.repository) / served.model_name,
            json.loads(Path(sm.input.io).read_text()),
            batches[0]["inputs"],
            triton.get("warmup"),
        )
        coldstart.write(figures, sm.output.coldstart)
        accuracy.evaluate(
            source,
            running,
            target,
            served,
            sm.input.artifact,
            sm.input.io,
            sm.params.batch_size,
            sm.output.dump,
            sm.output.csv,
            provenance.of_job(sm),
            tolerances=sm.params.tolerances,
            batches=batches,
        )


def failed(sm, failure):
    target = Target.of(sm.wildcards)
    accuracy.write_failure(target, failure, sm.output.csv, sm.output.dump)
    if not Path(sm.output.coldstart).exists():  # figures measured before the failure are kept
        coldstart.write_failure(target, failure, sm.output.coldstart)


job.run(snakemake, main, failed)
