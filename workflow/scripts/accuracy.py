from deploysnake import accuracy, job, provenance, server
from deploysnake.repository import read_config, triton_model_name
from deploysnake.sources import load_settings


def main(sm):
    w, settings, triton = sm.wildcards, sm.params.settings, sm.params.server
    recipe = load_settings(settings)
    name = triton_model_name(w.model, w.format)
    # The served configuration's (a tuned one's too): 0 sends each dataloader batch whole.
    max_batch_size = read_config(f"{sm.input.repository}/{name}/config.pbtxt").max_batch_size
    with server.from_settings(sm.input.repository, triton, sm.log.server) as running:
        accuracy.evaluate(
            recipe,
            settings["params"],
            sm.input.checkpoint,
            running,
            w.model,
            w.format,
            w.device,
            name,
            sm.input.artifact,
            sm.input.io,
            sm.params.batch_size,
            sm.output.dump,
            sm.output.csv,
            settings["framework"],
            provenance.of_job(sm),
            max_batch_size,
            tolerances=sm.params.tolerances,
        )


def failed(sm, failure):
    accuracy.write_failure(sm.wildcards, failure, sm.output.csv, sm.output.dump)


job.run(snakemake, main, failed)
